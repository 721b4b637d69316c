"""``simpul fleet`` (alias ``simpul fleet console``): the operator's console over fleet.db.

With ``--broker`` the console can send commands (reboot, log) to gateways, and, when no
``simpul fleet serve`` holds the fleet directory's serve lock, it runs the fleet engine
itself in a background thread for as long as it is open, so one command on an operator's
laptop is a whole fleet manager. ``--serve`` serves the same console to browsers (a wall
screen) with textual-serve: each browser session runs a console of its own.

Textual is imported only when the console runs, so the other commands start as fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fleet.keys import FLEET_DIR_ENV, default_fleet_dir
from fleet.link import BrokerSettings, add_broker_arguments, broker_from_arguments
from fleet.serve import BROKER_ENV, ServeLock, serve
from fleet.store import DB_NAME

if TYPE_CHECKING:
    from fleet.console.app import ConsoleApp

#: Where ``--serve`` listens when given no address: this machine only.
DEFAULT_SERVE_ADDRESS: Final = "127.0.0.1:8000"
#: The console's subtitle, saying whether it runs the fleet engine or only reads fleet.db.
ENGINE_SUBTITLE: Final = "fleet console, running the fleet engine"
READER_SUBTITLE: Final = "fleet console"
#: What a read-only console adds to its subtitle.
READ_ONLY_NOTE: Final = " (read-only)"
#: How long closing the console waits for its fleet engine to disconnect.
ENGINE_STOP_TIMEOUT_S: Final = 10.0

log = logging.getLogger(__name__)


class ConsoleEngine:
    """The fleet engine in a thread of the console, holding the serve lock while it runs."""

    def __init__(self, fleet_dir: Path, settings: BrokerSettings, lock: ServeLock) -> None:
        self.fleet_dir = fleet_dir
        self.settings = settings
        self.lock = lock
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-engine", daemon=True)
        self._app: ConsoleApp | None = None

    def start(self, app: ConsoleApp) -> None:
        self._app = app
        self._thread.start()

    def _run(self) -> None:
        try:
            code = serve(
                self.fleet_dir, self.settings, stop=self.stop, lock=self.lock, say=log.info
            )
        # Whatever stops the engine is the operator's to read; the console goes on reading.
        except Exception as exc:
            self._tell(f"the fleet engine stopped: {type(exc).__name__}: {exc}")
            return
        if code != 0:
            self._tell(
                f"the fleet engine stopped: broker {self.settings.host}:{self.settings.port}"
                " did not answer"
            )

    def _tell(self, text: str) -> None:
        app = self._app
        if app is not None and app.is_running:
            app.call_from_thread(app.notify, text, title="Fleet engine", severity="error")

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(ENGINE_STOP_TIMEOUT_S)


def broker_settings(args: argparse.Namespace) -> BrokerSettings | None:
    """The console's broker from ``--broker`` and its credentials (``None``: no broker)."""
    return broker_from_arguments(args, client_id=f"simpul-console-{os.getpid()}")


def run(args: argparse.Namespace) -> int:
    fleet_dir: Path = args.fleet_dir or default_fleet_dir()
    if not (fleet_dir / DB_NAME).exists():
        print(
            f"simpul fleet: no fleet database at {fleet_dir / DB_NAME}: run 'simpul fleet init'"
            " first",
            file=sys.stderr,
        )
        return 1
    try:
        settings = broker_settings(args)
    except ValueError as exc:
        print(f"simpul fleet: error: {exc}", file=sys.stderr)
        return 2
    if args.serve is not None:
        return _serve_in_browser(args, fleet_dir)
    from fleet.inventory import operator_name

    app, engine = open_console(
        fleet_dir, settings, operator_name(None), refresh_s=args.refresh, read_only=args.read_only
    )
    try:
        app.run()
    finally:
        if engine is not None:
            engine.close()
    return 0


def open_console(
    fleet_dir: Path,
    settings: BrokerSettings | None,
    operator: str,
    *,
    refresh_s: float,
    read_only: bool = False,
) -> tuple[ConsoleApp, ConsoleEngine | None]:
    """The console over ``fleet_dir``, and the fleet engine it runs (started; close it when
    the app ends), if a broker is given and no other process holds the serve lock. A
    ``read_only`` console refuses every action (the served one: see ``--serve``)."""
    from fleet.console.app import ConsoleApp
    from fleet.console.backend import StoreBackend

    app = ConsoleApp(
        StoreBackend(fleet_dir, operator=operator, broker=settings),
        refresh_s=refresh_s,
        read_only=read_only,
    )
    engine: ConsoleEngine | None = None
    if settings is not None:
        lock = ServeLock(fleet_dir)
        if lock.acquire():
            engine = ConsoleEngine(fleet_dir, settings, lock)
    app.sub_title = (ENGINE_SUBTITLE if engine else READER_SUBTITLE) + (
        READ_ONLY_NOTE if read_only else ""
    )
    if engine is not None:
        engine.start(app)
    return app, engine


def console_command(args: argparse.Namespace, fleet_dir: Path) -> list[str]:
    """The command line of a console like this one, for textual-serve to run per browser:
    read-only, since whoever reaches the page is not known to be an operator."""
    command = [sys.executable, "-m", "fleet.cli", "fleet", "--fleet-dir", str(fleet_dir)]
    command += ["--read-only"]
    command += ["--refresh", str(args.refresh)]
    if args.broker is not None:
        command += ["--broker", args.broker]
    for option, value in (
        ("--username", args.username),
        ("--password-file", args.password_file),
        ("--tls-ca", args.tls_ca),
    ):
        if value is not None:
            command += [option, str(value)]
    return command


def _serve_in_browser(args: argparse.Namespace, fleet_dir: Path) -> int:
    from textual_serve.server import Server

    host, sep, port = str(args.serve).rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        print(f"simpul fleet: error: --serve {args.serve!r} is not HOST:PORT", file=sys.stderr)
        return 2
    server = Server(
        shlex.join(console_command(args, fleet_dir)),
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        title="simpul fleet console",
    )
    server.serve()
    return 0


def add_console_options(parser: argparse.ArgumentParser) -> None:
    """The console's options, on ``simpul fleet`` and on its alias ``simpul fleet console``."""
    parser.add_argument(
        "--fleet-dir",
        type=Path,
        default=None,
        help=f"the fleet directory (default: ${FLEET_DIR_ENV}, else $XDG_DATA_HOME/simpul/fleet)",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often the fleet is read (default: %(default)s)",
    )
    add_broker_arguments(
        parser,
        default=os.environ.get(BROKER_ENV),
        help="the gateways' MQTT broker, for commands (reboot, log) and, when no 'simpul fleet"
        f" serve' runs, the fleet engine in the console (default: ${BROKER_ENV}, else none:"
        " the console only reads)",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="show the fleet, refuse every action (rollouts, alerts, board commands); what"
        " --serve gives each browser",
    )
    parser.add_argument(
        "--serve",
        nargs="?",
        const=DEFAULT_SERVE_ADDRESS,
        metavar="HOST:PORT",
        help="serve the console to web browsers at http://HOST:PORT instead (default"
        f" {DEFAULT_SERVE_ADDRESS}: this machine only; give 0.0.0.0:PORT for a wall screen"
        " on the network)",
    )
    parser.set_defaults(handler=run)


def add_commands(fleet_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``simpul fleet console``, the older name of ``simpul fleet`` with no command."""
    parser = fleet_commands.add_parser(
        "console",
        help="the operator's console (what 'simpul fleet' alone opens)",
        description="The operator's console: sites, gateways and boards, live.",
    )
    add_console_options(parser)
