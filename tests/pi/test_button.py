"""The button on a MockFactory pin: a short press opens pairing, a long press shuts down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from gateway.pi.button import PairingWindow, PanelButton

BUTTON_PIN = 27
HOLD_S = 0.4


class Presses:
    def __init__(self) -> None:
        self.short = 0
        self.long = 0
        self.changed = threading.Event()

    def on_short(self) -> None:
        self.short += 1
        self.changed.set()

    def on_long(self) -> None:
        self.long += 1
        self.changed.set()


@pytest.fixture
def rig() -> Iterator[tuple[MockPin, Presses]]:
    factory = MockFactory()
    presses = Presses()
    button = PanelButton(
        BUTTON_PIN,
        hold_s=HOLD_S,
        on_short=presses.on_short,
        on_long=presses.on_long,
        pin_factory=factory,
    )
    try:
        yield factory.pin(BUTTON_PIN), presses
    finally:
        button.close()
        factory.close()


def test_a_short_press_opens_pairing_only(rig: tuple[MockPin, Presses]) -> None:
    pin, presses = rig
    pin.drive_low()  # pressed: the button shorts the pulled-up pin to ground
    time.sleep(0.1)
    pin.drive_high()
    assert presses.changed.wait(2)
    time.sleep(HOLD_S + 0.2)
    assert (presses.short, presses.long) == (1, 0)


def test_a_long_press_asks_for_shutdown_once(rig: tuple[MockPin, Presses]) -> None:
    pin, presses = rig
    pin.drive_low()
    time.sleep(HOLD_S * 3)  # held well past hold_time: still one request
    assert (presses.short, presses.long) == (0, 1)
    pin.drive_high()  # letting go after a hold is not also a short press
    time.sleep(0.2)
    assert (presses.short, presses.long) == (0, 1)


def test_a_press_just_under_the_hold_time_is_short(rig: tuple[MockPin, Presses]) -> None:
    pin, presses = rig
    pin.drive_low()
    time.sleep(HOLD_S * 0.5)
    pin.drive_high()
    time.sleep(HOLD_S)
    assert (presses.short, presses.long) == (1, 0)


def test_the_pairing_window_closes_on_the_monotonic_clock() -> None:
    now = [100.0]
    window = PairingWindow(120, clock=lambda: now[0], wall_ms=lambda: 5_000)
    assert not window.is_open()
    window.open()
    assert window.is_open()
    assert window.left_s() == 120
    assert window.opened_ms == 5_000
    now[0] += 119.5
    assert window.is_open()
    now[0] += 1
    assert not window.is_open()
    assert window.left_s() == 0
