"""EN and IO0 on MockFactory pins: the sequences of a reset and of bootloader entry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from gateway.config import WiredBoardConfig
from gateway.pi.lines import BoardLines, WiredBoards

EN, IO0 = 23, 24
HIGH, LOW = True, False


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.close()


def pins(factory: MockFactory) -> tuple[MockPin, MockPin]:
    en, io0 = factory.pin(EN), factory.pin(IO0)
    en.clear_states()
    io0.clear_states()
    return en, io0


def test_lines_idle_high(factory: MockFactory) -> None:
    BoardLines(EN, IO0, pin_factory=factory)
    assert factory.pin(EN).state == HIGH
    assert factory.pin(IO0).state == HIGH


def test_reset_pulls_en_low_for_100_ms_with_io0_high(factory: MockFactory) -> None:
    lines = BoardLines(EN, IO0, pin_factory=factory)
    en, io0 = pins(factory)
    done = lines.reset()
    en.assert_states_and_times([(0.0, HIGH), (0.0, LOW), (0.1, HIGH)])
    assert len(en.states) == 3
    assert [s.state for s in io0.states] == [HIGH]  # IO0 never moved
    assert done == {"en_low_ms": 100, "io0": "high"}


def test_bootloader_holds_io0_low_across_the_en_pulse(factory: MockFactory) -> None:
    lines = BoardLines(EN, IO0, pin_factory=factory, strap_s=0.2)
    en, io0 = pins(factory)
    lines.bootloader()
    en.assert_states_and_times([(0.0, HIGH), (0.0, LOW), (0.1, HIGH)])
    io0.assert_states_and_times([(0.0, HIGH), (0.0, LOW), (0.3, HIGH)])
    assert len(en.states) == len(io0.states) == 3
    # IO0 fell before EN did and rose after it: the chip samples it low as EN rises.
    assert io0.states[1].timestamp <= en.states[1].timestamp + 1e-3


def test_inverted_wiring_drives_the_gpio_high_to_pull_a_line_low(factory: MockFactory) -> None:
    lines = BoardLines(EN, IO0, inverted=True, pin_factory=factory)
    en, io0 = pins(factory)
    assert en.state == LOW
    assert io0.state == LOW
    lines.reset()
    en.assert_states_and_times([(0.0, LOW), (0.0, HIGH), (0.1, LOW)])


def test_wired_boards_run_by_board_id(factory: MockFactory) -> None:
    boards = WiredBoards(
        {"tkg-air-0001": WiredBoardConfig(en=EN, io0=IO0)}, pulse_s=0.05, pin_factory=factory
    )
    en, _ = pins(factory)
    done = boards.run("power_cycle", "tkg-air-0001")
    assert done["board"] == "tkg-air-0001"
    assert done["action"] == "power_cycle"
    en.assert_states([HIGH, LOW, HIGH])
    with pytest.raises(KeyError):
        boards.run("power_cycle", "tkg-air-0002")
    with pytest.raises(ValueError, match="reboot"):
        boards.run("reboot", "tkg-air-0001")
