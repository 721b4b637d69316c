"""``sd_notify`` for the gateway daemon, and a watchdog that pings only while it is healthy.

systemd starts a ``Type=notify`` service with ``$NOTIFY_SOCKET`` naming an ``AF_UNIX``
datagram socket (a path, or ``@name`` in the abstract namespace); each datagram is
newline-separated ``KEY=VALUE`` lines (sd_notify(3)): ``READY=1`` once the service serves,
``STATUS=`` for ``systemctl status``, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC``
(else systemd kills and, with ``Restart=on-failure``, restarts it), ``STOPPING=1`` when it
begins to stop. The protocol is a few lines of socket code, so no library is needed.

Without ``$NOTIFY_SOCKET`` (a terminal, a test, another supervisor) every call is a no-op.

:func:`supervise` runs the watchdog on the event loop's clock (monotonic: a wall clock
that jumps by hours changes nothing here). Each round it asks the daemon whether it is
healthy (the loop turns, since this task runs; the writer process answers a ping) and sends
``WATCHDOG=1`` only if so: a hung writer stops the pings, and systemd restarts the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

log = logging.getLogger(__name__)

#: How often STATUS is refreshed when systemd asked for no watchdog, in seconds.
STATUS_INTERVAL_S: Final = 10.0


class Notifier:
    """Sends sd_notify messages to one socket address; ``Notifier(None)`` sends nothing."""

    def __init__(self, address: str | None) -> None:
        if address and address[0] == "@":
            address = "\0" + address[1:]  # the abstract namespace (Linux)
        elif address and address[0] != "/":
            address = None  # sd_notify(3) knows only these two forms (vsock aside)
        self.address = address or None
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one message of ``lines``; False if there is nobody or it could not go."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:  # the supervisor is gone or busy: the daemon goes on
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``); None: no watchdog.

    ``$WATCHDOG_PID``, when set, must be this process (sd_watchdog_enabled(3)).
    """
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


def status_line(stats: Mapping[str, Any]) -> str:
    """One line for ``systemctl status`` from :meth:`gateway.daemon.Gateway.stats`."""
    backlog = max(
        [u.get("backlog", 0) for u in stats.get("uplinks", {}).values()]
        + [u.get("backlog", 0) for u in stats.get("batch_uplinks", {}).values()]
        + [stats.get("batches", {}).get("waiting", 0)],
    )
    disk = stats.get("disk", {})
    return (
        f"{stats.get('boards_online', 0)}/{stats.get('boards_seen', 0)} boards online,"
        f" {stats.get('readings_stored', 0)} readings stored since start,"
        f" backlog {backlog}, disk {disk.get('state', 'ok')}"
    )


async def supervise(
    notifier: Notifier,
    healthy: Callable[[float], Awaitable[bool]],
    status: Callable[[], str],
    *,
    interval_s: float | None,
) -> None:
    """Ping the watchdog every ``interval_s`` while ``healthy(timeout)``, refresh STATUS.

    Runs until cancelled. ``healthy`` gets how long it may take; a round in which it says
    no (or takes longer) sends no WATCHDOG=1. With no watchdog asked for, only STATUS.
    """
    loop = asyncio.get_running_loop()
    period = interval_s if interval_s is not None else STATUS_INTERVAL_S
    was_healthy = True
    shown = ""
    due = loop.time()
    while True:
        if interval_s is not None:
            try:
                ok = await asyncio.wait_for(healthy(period * 0.8), period)
            except TimeoutError:
                ok = False
            if ok:
                notifier.watchdog()
            if ok != was_healthy:
                if ok:
                    log.warning("the store writer answers again: watchdog pings resumed")
                else:
                    log.error("the store writer does not answer: no watchdog ping")
            was_healthy = ok
        try:
            line = status()
        except Exception as exc:  # a busy store: the status waits for the next round
            log.debug("status not updated: %s", exc)
        else:
            if line != shown:
                shown = line if notifier.status(line) else shown
        due += period
        now = loop.time()
        if due < now:  # the loop was held up: go on from now, not in a burst
            due = now + period
        await asyncio.sleep(due - now)


__all__ = ["Notifier", "status_line", "supervise", "watchdog_interval_s"]
