"""The gateway's one push button: a short press opens a pairing window, a long press asks
for a safe shutdown.

The button is wired from its GPIO to ground and held high by the Pi's pull-up
(gpiozero's :class:`~gpiozero.Button` default). gpiozero calls ``when_held`` once the
button has been down ``hold_s``; a release before that is a short press. Both callbacks
run in gpiozero's threads, so the handlers given here must be thread-safe (the daemon's
hand them to its event loop).

**Pairing.** Today the gateway stores the readings of every board that speaks its protocol
(per-board keys are to come), so a pairing window refuses and admits nothing by itself: it
is the moment a technician at the cabinet marks. While it is open the LED shows it, and the
boards the gateway hears for the first time in it are listed as paired in the gateway's
health (``pi.pairing``), so the technician and the operator both see that the board just
powered up joined this gateway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from gpiozero import Button


class PanelButton:
    """Short press: ``on_short()``; held ``hold_s`` seconds: ``on_long()`` (once per hold)."""

    def __init__(
        self,
        pin: int,
        *,
        hold_s: float,
        on_short: Callable[[], None],
        on_long: Callable[[], None],
        pin_factory: Any,
    ) -> None:
        self.button = Button(pin, pull_up=True, hold_time=hold_s, pin_factory=pin_factory)
        self._on_short = on_short
        self._on_long = on_long
        self._held = False
        self._lock = threading.Lock()
        self.button.when_pressed = self._pressed
        self.button.when_held = self._hold
        self.button.when_released = self._released

    def _pressed(self) -> None:
        with self._lock:
            self._held = False

    def _hold(self) -> None:
        with self._lock:
            self._held = True
        self._on_long()

    def _released(self) -> None:
        with self._lock:
            held = self._held
        if not held:
            self._on_short()

    def close(self) -> None:
        self.button.close()


class PairingWindow:
    """A window of ``length_s`` seconds that a short press opens (again: from that press).

    ``clock`` is monotonic (the window must not stretch or vanish when the wall clock
    jumps); ``wall_ms`` dates the window for the boards' first-seen times in the registry.
    """

    def __init__(
        self,
        length_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.length_s = length_s
        self._clock = clock
        self._wall_ms = wall_ms
        self._until: float | None = None
        #: Wall-clock ms when the last window opened (None: never).
        self.opened_ms: int | None = None
        self.opened = 0

    def open(self) -> None:
        self._until = self._clock() + self.length_s
        self.opened_ms = self._wall_ms()
        self.opened += 1

    def is_open(self) -> bool:
        return self._until is not None and self._clock() < self._until

    def left_s(self) -> float:
        """Seconds the window stays open (0 when closed)."""
        if self._until is None:
            return 0.0
        return max(0.0, self._until - self._clock())


__all__ = ["PairingWindow", "PanelButton"]
