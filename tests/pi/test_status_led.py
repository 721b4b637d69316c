"""The status LED: one pattern per state, shown on a MockFactory pin, and the priority."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from gateway.pi.status import (
    ALL_WELL,
    BOARDS_SILENT,
    DISK_NEARLY_FULL,
    PAIRING,
    PATTERNS,
    PRIORITY,
    SHUTTING_DOWN,
    UPDATE_RUNNING,
    UPLINK_DOWN,
    Observation,
    StatusLed,
    status_of,
)

LED_PIN = 17


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.close()


def expected_states(state: str, rounds: int = 1) -> list[tuple[float, bool]]:
    """(seconds since the previous change, level) of ``rounds`` of the state's pattern."""
    changes: list[tuple[float, bool]] = [(0.0, False)]
    level, since = False, 0.0
    for _ in range(rounds):
        for blink in PATTERNS[state]:
            for _ in range(blink.n):
                for on, length in ((True, blink.on_time), (False, blink.off_time)):
                    if length <= 0:
                        continue
                    if on != level:
                        changes.append((since, on))
                        level, since = on, 0.0
                    since += length
    return changes


@pytest.mark.parametrize(
    "state", [UPLINK_DOWN, BOARDS_SILENT, DISK_NEARLY_FULL, PAIRING, UPDATE_RUNNING]
)
def test_each_state_blinks_its_own_pattern(factory: MockFactory, state: str) -> None:
    led = StatusLed(LED_PIN, pin_factory=factory)
    pin: MockPin = factory.pin(LED_PIN)
    pin.clear_states()
    try:
        led.show(state)
        expected = expected_states(state, rounds=2)
        total = sum(b.n * (b.on_time + b.off_time) for b in PATTERNS[state])
        time.sleep(total + 0.15)  # one round and the start of the next
    finally:
        led.close()
    seen = [(round(s.timestamp, 2), s.state) for s in pin.states]
    assert len(pin.states) >= min(len(expected), 6), seen
    pin.assert_states_and_times(expected[: len(pin.states) - 1])


def test_all_well_is_a_short_heartbeat(factory: MockFactory) -> None:
    led = StatusLed(LED_PIN, pin_factory=factory)
    pin: MockPin = factory.pin(LED_PIN)
    pin.clear_states()
    try:
        led.show(ALL_WELL)
        time.sleep(3.3)
    finally:
        led.close()
    pin.assert_states_and_times([(0.0, False), (0.0, True), (0.1, False), (2.9, True)])


def test_shutting_down_is_steady_on(factory: MockFactory) -> None:
    led = StatusLed(LED_PIN, pin_factory=factory)
    pin: MockPin = factory.pin(LED_PIN)
    pin.clear_states()
    try:
        led.show(SHUTTING_DOWN)
        time.sleep(2.3)
        assert [s.state for s in pin.states] == [False, True]
    finally:
        led.close()


def test_a_new_state_cuts_the_pattern_short(factory: MockFactory) -> None:
    led = StatusLed(LED_PIN, pin_factory=factory)
    pin: MockPin = factory.pin(LED_PIN)
    try:
        led.show(ALL_WELL)  # a flash, then 2.9 s dark
        time.sleep(0.3)
        pin.clear_states()
        led.show(PAIRING)
        time.sleep(0.6)
    finally:
        led.close()
    pin.assert_states_and_times([(0.0, False), (0.0, True), (0.25, False), (0.25, True)])


def test_showing_the_same_state_does_not_restart_it(factory: MockFactory) -> None:
    led = StatusLed(LED_PIN, pin_factory=factory)
    pin: MockPin = factory.pin(LED_PIN)
    pin.clear_states()
    try:
        led.show(UPDATE_RUNNING)
        for _ in range(5):
            time.sleep(0.1)
            led.show(UPDATE_RUNNING)
        time.sleep(0.6)
    finally:
        led.close()
    pin.assert_states_and_times([(0.0, False), (0.0, True), (0.5, False), (0.5, True)])


def test_an_active_low_led_is_lit_by_a_low_pin(factory: MockFactory) -> None:
    led = StatusLed(LED_PIN, active_high=False, pin_factory=factory)
    pin: MockPin = factory.pin(LED_PIN)
    pin.clear_states()
    try:
        led.show(SHUTTING_DOWN)
        time.sleep(0.2)
    finally:
        led.close()
    pin.assert_states([True, False])


def test_patterns_are_distinct_and_cover_every_state() -> None:
    assert set(PATTERNS) == set(PRIORITY)
    assert len({PATTERNS[s] for s in PRIORITY}) == len(PRIORITY)


@pytest.mark.parametrize(
    ("observation", "state"),
    [
        (Observation(), ALL_WELL),
        (Observation(update_running=True), UPDATE_RUNNING),
        (Observation(update_running=True, boards_silent=True), BOARDS_SILENT),
        (Observation(boards_silent=True, uplink_down=True), UPLINK_DOWN),
        (Observation(uplink_down=True, disk_nearly_full=True), DISK_NEARLY_FULL),
        (Observation(disk_nearly_full=True, pairing=True), PAIRING),
        (
            Observation(True, True, True, True, True, True),
            SHUTTING_DOWN,
        ),
    ],
)
def test_the_first_state_in_priority_order_wins(observation: Observation, state: str) -> None:
    assert status_of(observation) == state
