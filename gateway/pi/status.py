"""What the gateway's state is, in one word, and the LED pattern that shows it.

:func:`status_of` is pure: it takes an :class:`Observation` (``gateway.pi.observe`` reads
one from the store) and returns the first state that holds, in :data:`PRIORITY` order. Each
state has one :class:`Pattern`: a sequence of gpiozero-style blinks (``on_time``,
``off_time``, ``n``) played round and round by :class:`StatusLed`. The number of flashes
before a pause grows with what needs a visit: one slow heartbeat is all well, four quick
flashes a disk nearly full.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final

from gpiozero import LED

SHUTTING_DOWN: Final = "shutting_down"
PAIRING: Final = "pairing"
DISK_NEARLY_FULL: Final = "disk_nearly_full"
UPLINK_DOWN: Final = "uplink_down"
BOARDS_SILENT: Final = "boards_silent"
UPDATE_RUNNING: Final = "update_running"
ALL_WELL: Final = "all_well"

#: Highest first: the LED shows the first state that holds.
PRIORITY: Final = (
    SHUTTING_DOWN,
    PAIRING,
    DISK_NEARLY_FULL,
    UPLINK_DOWN,
    BOARDS_SILENT,
    UPDATE_RUNNING,
    ALL_WELL,
)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the gateway knows of itself at one moment (``gateway.pi.observe``)."""

    #: A long press asked for a safe shutdown; the daemon is stopping.
    shutting_down: bool = False
    #: A pairing window is open (a short press).
    pairing: bool = False
    #: The outbox is near its disk budget, or the state directory's file system nearly full.
    disk_nearly_full: bool = False
    #: An uplink has had something to deliver and delivered nothing for a while.
    uplink_down: bool = False
    #: A board that reported recently has gone quiet.
    boards_silent: bool = False
    #: A board is downloading, installing or trying a release.
    update_running: bool = False


def status_of(observation: Observation) -> str:
    """The state the LED shows: the first of :data:`PRIORITY` that holds."""
    for state in PRIORITY[:-1]:
        if getattr(observation, state):
            return state
    return ALL_WELL


@dataclass(frozen=True, slots=True)
class Blink:
    """``n`` times: on for ``on_time`` seconds, then off for ``off_time`` (gpiozero's blink)."""

    on_time: float
    off_time: float
    n: int = 1


Pattern = tuple[Blink, ...]

#: One pattern per state; the README's table says the same.
PATTERNS: Final[dict[str, Pattern]] = {
    SHUTTING_DOWN: (Blink(1.0, 0.0),),  # steady on until the Pi's power goes
    PAIRING: (Blink(0.25, 0.25),),  # even 2 Hz blinking while the window is open
    DISK_NEARLY_FULL: (Blink(0.1, 0.2, 4), Blink(0.0, 1.5)),  # four flashes, a pause
    UPLINK_DOWN: (Blink(0.1, 0.2, 3), Blink(0.0, 1.5)),  # three flashes, a pause
    BOARDS_SILENT: (Blink(0.1, 0.2, 2), Blink(0.0, 1.5)),  # two flashes, a pause
    UPDATE_RUNNING: (Blink(0.5, 0.5),),  # even 1 Hz blinking
    ALL_WELL: (Blink(0.1, 2.9),),  # a heartbeat: one short flash every 3 s
}


class StatusLed:
    """The status LED: shows one state's pattern at a time, in a thread of its own.

    :meth:`show` with the state already shown changes nothing, so the pattern is not
    restarted by every observation.
    """

    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any) -> None:
        self.led = LED(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)
        self.state: str | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._play, name="status-led", daemon=True)
        self._thread.start()

    def show(self, state: str) -> None:
        if state not in PATTERNS:
            raise ValueError(f"no LED pattern for state {state!r}")
        with self._lock:
            if state == self.state:
                return
            self.state = state
        self._wake.set()

    def _play(self) -> None:
        while not self._closed:
            self._wake.clear()  # before reading: a show() from now on cuts the pattern
            with self._lock:
                state = self.state
            if state is None:
                self._wake.wait()
                continue
            if self._play_once(PATTERNS[state]):
                continue  # a new state (or close) cut the pattern short
        self.led.off()

    def _play_once(self, pattern: Pattern) -> bool:
        """One round of ``pattern``; True if it was cut short."""
        for blink in pattern:
            for _ in range(blink.n):
                if blink.on_time > 0:
                    self.led.on()
                    if self._wake.wait(blink.on_time):
                        return True
                if blink.off_time > 0:
                    self.led.off()
                    if self._wake.wait(blink.off_time):
                        return True
        return False

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(5)
        self.led.close()


__all__ = [
    "ALL_WELL",
    "BOARDS_SILENT",
    "DISK_NEARLY_FULL",
    "PAIRING",
    "PATTERNS",
    "PRIORITY",
    "SHUTTING_DOWN",
    "UPDATE_RUNNING",
    "UPLINK_DOWN",
    "Blink",
    "Observation",
    "StatusLed",
    "status_of",
]
