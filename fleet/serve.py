"""``simpul fleet serve``: the fleet manager as a service.

It connects to the broker the gateways use, takes in their signed state, events, replies and
batches, keeps fleet.db up to date, judges rollouts, and publishes each gateway's signed
desired-state document when it changes (``fleet.engine``). Stopping it loses nothing: the
gateways act on their last documents alone, and their retained state comes again when it
starts.

It prints one ready line once connected (``fleet serving <fleet dir> via <broker>``), a line
per change it publishes, and exits on SIGTERM or Ctrl-C.

One fleet engine runs per fleet directory: while it runs it holds an exclusive lock on
``<fleet dir>/serve.lock`` (:class:`ServeLock`), so a second ``simpul fleet serve`` refuses to
start, and the console runs the engine itself only when nobody holds it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from fleet.engine import FleetEngine
from fleet.errors import FleetBusy, FleetError
from fleet.keys import FLEET_DIR_ENV, default_fleet_dir
from fleet.link import BrokerSettings, FleetLink, add_broker_arguments, broker_from_arguments
from fleet.store import DB_NAME, FleetStore

BROKER_ENV: Final = "SIMPUL_FLEET_BROKER"
DEFAULT_CYCLE_S: Final = 2.0
CONNECT_TIMEOUT_S: Final = 30.0
#: The lock file in the fleet directory that the running fleet engine holds.
LOCK_NAME: Final = "serve.lock"

log = logging.getLogger(__name__)


class ServeLock:
    """``<fleet dir>/serve.lock``, held with an exclusive ``flock`` by the one process that
    runs the fleet engine. The kernel drops it when that process ends, however it ends, so a
    crash never leaves a stale lock; the file keeps the holder's pid for messages."""

    def __init__(self, fleet_dir: Path) -> None:
        self.path = fleet_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; whether this process now holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lock, as far as the file says (for messages)."""
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        return f"process {pid}" if pid else "another process"

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor drops the flock


def _say(line: str) -> None:
    print(line, flush=True)


def serve(
    fleet_dir: Path,
    settings: BrokerSettings,
    *,
    cycle_s: float = DEFAULT_CYCLE_S,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    lock: ServeLock | None = None,
    say: Callable[[str], None] = _say,
) -> int:
    """Run until ``stop`` is set (or SIGTERM); the exit code.

    It holds ``lock`` (taken here if not given already held; :class:`FleetBusy` if another
    process holds it) until it returns, and releases it then. ``say`` gets the ready line and
    a line per published document (stdout by default; the console shows them its own way).
    """
    stop = stop or threading.Event()
    lock = lock or ServeLock(fleet_dir)
    if not lock.acquire():
        raise FleetBusy(f"the fleet engine of {fleet_dir} already runs in {lock.holder()}")
    try:
        return _run_engine(fleet_dir, settings, cycle_s, stop, ready, say)
    finally:
        lock.release()


def _run_engine(
    fleet_dir: Path,
    settings: BrokerSettings,
    cycle_s: float,
    stop: threading.Event,
    ready: threading.Event | None,
    say: Callable[[str], None],
) -> int:
    store = FleetStore(fleet_dir / DB_NAME)
    link = FleetLink(settings)
    engine = FleetEngine(fleet_dir, store, link)
    try:
        link.start()
        if not link.wait_connected(CONNECT_TIMEOUT_S):
            print(
                f"simpul fleet serve: error: broker {settings.host}:{settings.port} did not"
                f" answer in {CONNECT_TIMEOUT_S:.0f} s",
                file=sys.stderr,
            )
            return 1
        engine.republish()
        say(f"fleet serving {fleet_dir} via {settings.host}:{settings.port}")
        if ready is not None:
            ready.set()
        next_tick = 0.0
        while not stop.is_set():
            engine.handle(link.wait(min(cycle_s, 0.5)))
            now = time.monotonic()
            if now >= next_tick:
                for gateway in engine.tick():
                    say(f"published desired state for {gateway}")
                next_tick = now + cycle_s
        return 0
    finally:
        link.stop()
        store.close()


def add_commands(fleet_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = fleet_commands.add_parser(
        "serve",
        help="run the fleet manager: take in gateways' state, publish desired state",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "--fleet-dir",
        type=Path,
        default=None,
        help=f"the fleet directory (default: ${FLEET_DIR_ENV}, else $XDG_DATA_HOME/simpul/fleet)",
    )
    add_broker_arguments(
        parser,
        default=os.environ.get(BROKER_ENV, "127.0.0.1:1883"),
        help=f"the MQTT broker the gateways use (default: ${BROKER_ENV}, else 127.0.0.1:1883)",
    )
    parser.add_argument(
        "--cycle",
        type=float,
        default=DEFAULT_CYCLE_S,
        metavar="SECONDS",
        help="how often rollouts are judged and documents published (default: %(default)s)",
    )
    parser.set_defaults(handler=_serve_command)


def _serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fleet_dir = args.fleet_dir or default_fleet_dir()
    try:
        settings = broker_from_arguments(args)
        assert settings is not None  # --broker has a default
        if not (fleet_dir / DB_NAME).exists():
            raise FleetError(f"no fleet.db in {fleet_dir}: run 'simpul fleet init' first")
    except (ValueError, FleetError) as exc:
        print(f"simpul fleet serve: error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return serve(fleet_dir, settings, cycle_s=args.cycle, stop=stop)
    except KeyboardInterrupt:
        return 130
    except FleetError as exc:
        print(f"simpul fleet serve: error: {exc}", file=sys.stderr)
        return 1


__all__ = ["ServeLock", "serve"]
