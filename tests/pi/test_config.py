"""The pin map in [gateway.pi]: parsed, and checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "simpul.toml"
    path.write_text(text)
    return path


def test_no_pi_table_means_no_gpio() -> None:
    assert load_config(None, env={}).pi is None


def test_a_pin_map_is_read(tmp_path: Path) -> None:
    config = load_config(
        config_file(
            tmp_path,
            """
[gateway.pi]
status_led = 17
button = 27
hold_s = 3
[gateway.pi.boards.tkg-air-0001]
en = 23
io0 = 24
[gateway.pi.boards.tkg-water-0002]
en = 5
io0 = 6
inverted = true
""",
        ),
        env={},
    )
    pi = config.pi
    assert pi is not None
    assert (pi.status_led, pi.button, pi.hold_s) == (17, 27, 3.0)
    assert pi.boards["tkg-air-0001"].en == 23
    assert not pi.boards["tkg-air-0001"].inverted
    assert pi.boards["tkg-water-0002"].inverted
    assert pi.shutdown_command_argv() == ["systemctl", "poweroff"]


def test_two_uses_of_one_pin_are_refused_naming_both(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        """
[gateway.pi]
button = 27
[gateway.pi.boards.tkg-air-0001]
en = 23
io0 = 27
""",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path, env={})
    message = str(refused.value)
    assert "GPIO 27" in message
    assert "button" in message
    assert "boards.tkg-air-0001.io0" in message


def test_one_pin_for_two_boards_is_refused(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        """
[gateway.pi.boards.tkg-air-0001]
en = 23
io0 = 24
[gateway.pi.boards.tkg-air-0002]
en = 23
io0 = 25
""",
    )
    with pytest.raises(ConfigError, match=r"tkg-air-0001\.en.*tkg-air-0002\.en"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("setting", "why"),
    [
        ("status_led = 40", "GPIO 40 is not a usable GPIO"),
        ("status_led = 1", "GPIO 1 is not a usable GPIO"),
        ("button = -3", "GPIO -3 is not a usable GPIO"),
        ('button = "GPIO17"', "must be an integer"),
        ('pin_factory = "pigpio"', "pin_factory must be"),
        ('pin_factory = "emulated:nowhere"', "HOST:PORT"),
        ("hold_s = 0", "must be positive"),
        ('shutdown_command = ""', "must name a program"),
        ("led = 17", "unknown setting"),
    ],
)
def test_invalid_settings_are_refused(tmp_path: Path, setting: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_config(config_file(tmp_path, f"[gateway.pi]\n{setting}\n"), env={})


def test_a_wired_board_needs_both_lines(tmp_path: Path) -> None:
    path = config_file(tmp_path, "[gateway.pi.boards.tkg-air-0001]\nen = 23\n")
    with pytest.raises(ConfigError, match="io0"):
        load_config(path, env={})


def test_the_environment_can_wire_a_board() -> None:
    config = load_config(
        None,
        env={
            "SIMPUL_GATEWAY__PI__BOARDS__TKG-AIR-0001__EN": "23",
            "SIMPUL_GATEWAY__PI__BOARDS__TKG-AIR-0001__IO0": "24",
        },
    )
    assert config.pi is not None
    assert config.pi.boards["tkg-air-0001"].io0 == 24
