"""The daemon's GPIO, all together: the status LED kept up to date, the button's pairing
window and safe shutdown, the wired boards' lines, and the local channel the control process
reaches them through (``gateway.pi.channel``).

It lives in the daemon's process, because the button's long press stops the daemon itself;
gpiozero's callbacks come from its own threads and are handed to the event loop. The line
sequences (a few hundred ms of sleeps) run in a worker thread, so boards are answered
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from collections.abc import Callable
from typing import Any, Final

from gateway.config import GatewayConfig, PiConfig
from gateway.control.messages import LINE_ACTIONS
from gateway.pi.button import PairingWindow, PanelButton
from gateway.pi.channel import ChannelServer, socket_path
from gateway.pi.host import HostSensors
from gateway.pi.lines import WiredBoards
from gateway.pi.observe import Observer
from gateway.pi.status import ALL_WELL, SHUTTING_DOWN, StatusLed, status_of
from gateway.store.registry import StoreReader
from gateway.store.releases import ReleaseTable

log = logging.getLogger(__name__)

#: Seconds between two looks at the gateway's state for the LED.
WATCH_S: Final = 1.0
#: Seconds the shutdown command may take before it is given up on.
SHUTDOWN_COMMAND_TIMEOUT_S: Final = 60.0


class PiPanel:
    """The LED, the button, the lines and the channel of one gateway (``[gateway.pi]``)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        pin_factory: Any,
        outbox_full: Callable[[], bool] = lambda: False,
        on_shutdown: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.pi is None:
            raise ValueError("the gateway has no [gateway.pi] table")
        pi: PiConfig = config.pi
        self.config = config
        self.pi = pi
        self._outbox_full = outbox_full
        self._on_shutdown = on_shutdown
        self._clock = clock
        self.pairing = PairingWindow(pi.pairing_window_s, clock=clock)
        self.shutting_down = False
        self.state = ALL_WELL
        self.host = HostSensors(config.state_dir)
        self.led: StatusLed | None = None
        self.button: PanelButton | None = None
        self.boards: WiredBoards | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.Task[None] | None = None
        self._server: ChannelServer | None = None
        self._reader: StoreReader | None = None
        self._releases: ReleaseTable | None = None
        self._observer: Observer | None = None
        try:
            if pi.status_led is not None:
                self.led = StatusLed(
                    pi.status_led, active_high=pi.status_led_active_high, pin_factory=pin_factory
                )
            if pi.button is not None:
                self.button = PanelButton(
                    pi.button,
                    hold_s=pi.hold_s,
                    on_short=self._from_thread(self.open_pairing),
                    on_long=self._from_thread(self.request_shutdown),
                    pin_factory=pin_factory,
                )
            self.boards = WiredBoards(
                pi.boards, pulse_s=pi.reset_pulse_ms / 1000, pin_factory=pin_factory
            )
        except BaseException:
            self.close()
            raise

    def _from_thread(self, handler: Callable[[], None]) -> Callable[[], None]:
        """``handler`` run in the event loop, whichever thread gpiozero calls it from."""

        def call() -> None:
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            if _running_loop() is loop:
                handler()
            else:
                loop.call_soon_threadsafe(handler)

        return call

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Watch the gateway's state for the LED, and serve the control process's channel."""
        self._loop = asyncio.get_running_loop()
        self._reader = StoreReader(self.config.db_path)
        self._releases = ReleaseTable(self.config.db_path)
        self._observer = Observer(self.config, self._reader, self._releases)
        self.refresh()
        self._watch = asyncio.create_task(self._watch_state(), name="pi-status")
        self._server = ChannelServer(socket_path(self.config.state_dir), self.handle)
        await self._server.start()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        self.close()

    def close(self) -> None:
        """Release every pin (the LED goes dark, lines float back to the board's pull-ups)."""
        for device in (self.led, self.button, self.boards):
            if device is not None:
                with contextlib.suppress(Exception):
                    device.close()
        self.led = self.button = self.boards = None
        self.host.close()
        for store in (self._reader, self._releases):
            if store is not None:
                store.close()
        self._reader = self._releases = None

    # -- the LED --------------------------------------------------------------------------

    async def _watch_state(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                self.refresh()
            except Exception as exc:  # a busy store: the LED keeps its last state
                log.debug("status LED: cannot read the gateway's state: %s", exc)

    def refresh(self) -> str:
        """Look at the gateway's state now and show it; the state shown."""
        assert self._observer is not None
        observation = self._observer.observe(
            shutting_down=self.shutting_down,
            pairing=self.pairing.is_open(),
            outbox_full=self._outbox_full(),
        )
        self._show(status_of(observation))
        return self.state

    def _show(self, state: str) -> None:
        if state != self.state:
            log.info("gateway state: %s", state)
        self.state = state
        if self.led is not None:
            self.led.show(state)

    # -- the button -----------------------------------------------------------------------

    def open_pairing(self) -> None:
        self.pairing.open()
        log.warning("pairing window open for %d s (button pressed)", self.pi.pairing_window_s)
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self.refresh()

    def request_shutdown(self) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        log.warning("button held %.0f s: stopping the gateway, then: %s", self.pi.hold_s,
                    self.pi.shutdown_command)  # fmt: skip
        self._show(SHUTTING_DOWN)
        self._on_shutdown()

    # -- the channel ----------------------------------------------------------------------

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return {"ok": True, "result": self.status()}
        if op in LINE_ACTIONS:
            board = request.get("board")
            if not isinstance(board, str):
                return {"ok": False, "error": f"{op} needs a board"}
            if self.boards is None or board not in self.boards.lines:
                return {"ok": False, "error": f"board {board} has no EN/IO0 lines wired"}
            done = await asyncio.to_thread(self.boards.run, str(op), board)
            log.warning("%s of board %s by the fleet's command: %s", op, board, done)
            return {"ok": True, "result": done}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def status(self) -> dict[str, Any]:
        """What the state message's ``health.pi`` says."""
        window = self.pairing
        paired: list[str] = []
        if window.opened_ms is not None and self._reader is not None:
            since = window.opened_ms
            until = since + int(window.length_s * 1000)
            paired = sorted(
                r.board_id for r in self._reader.boards() if since <= r.first_seen_ms <= until
            )
        return {
            "led": self.state,
            "pairing": {
                "open": window.is_open(),
                "left_s": round(window.left_s()),
                "opened_ms": window.opened_ms,
                "paired": paired,
            },
            "wired_boards": sorted(self.pi.boards),
        }


def run_shutdown_command(pi: PiConfig) -> int | None:
    """Run ``pi.shutdown_command`` once (no shell); its exit code, None if it could not run."""
    argv = pi.shutdown_command_argv()
    try:
        done = subprocess.run(argv, check=False, timeout=SHUTDOWN_COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("shutdown command %s failed: %s", argv, exc)
        return None
    if done.returncode != 0:
        log.error("shutdown command %s exited with %d", argv, done.returncode)
    return done.returncode


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


__all__ = ["WATCH_S", "PiPanel", "run_shutdown_command"]
