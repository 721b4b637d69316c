"""A board whose EN and IO0 are wired to the gateway's GPIO, reset and put into its ROM
bootloader by the fleet's command, end to end.

Real parts: Mosquitto, ``simpul gateway run`` (its control process and its GPIO in their own
processes), ``simpul fleet command`` and ``simpul fleet serve``, and an emulated ESP32 whose
chip models EN, the IO0 strap and the ROM. The one stand-in is the copper between the Pi's
header and the board: the gateway's pins are gpiozero mock pins
(``pin_factory = "emulated:HOST:PORT"``) whose levels travel over loopback to
:class:`hw.gpio_wires.GpioWires`, which puts them on the chip's EN and IO0.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from hw.engines import runner_for
from hw.engines.base import BoardRunner, BoardSpec
from hw.gpio_wires import GpioWires
from tests.fleet_e2e.conftest import City
from tests.support import FAST, eventually

pytestmark = pytest.mark.slow

GATEWAY = "gw-takengon-1"
BOARD = "takengon-air-000"
EN, IO0, LED = 23, 24, 17


def wired_config(path: Path, wires_at: tuple[str, int]) -> Path:
    host, port = wires_at
    path.write_text(
        f"""
[gateway.pi]
pin_factory = "emulated:{host}:{port}"
status_led = {LED}

[gateway.pi.boards.{BOARD}]
en = {EN}
io0 = {IO0}
"""
    )
    return path


def lines(wires: GpioWires) -> list[tuple[int, bool]]:
    """What the gateway put on the board's EN and IO0 (not the LED's pin)."""
    return [(gpio, level) for gpio, level in wires.received if gpio in (EN, IO0)]


def board_health(city: City) -> dict[str, Any]:
    rows = city.gateway_db(GATEWAY, f"SELECT last_health FROM boards WHERE board_id = '{BOARD}'")
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


def command(city: City, action: str, board: str) -> tuple[int, dict[str, Any]]:
    sent = city.simpul(
        "fleet", "command", GATEWAY, action, "--board", board,
        "--broker", city.broker.address, "--wait", "90", "--json",
    )  # fmt: skip
    assert sent.stdout, sent.stderr
    return sent.returncode, json.loads(sent.stdout)


async def test_a_fleet_command_resets_a_wired_board_and_puts_it_in_its_bootloader(
    city: City, tmp_path: Path
) -> None:
    wires = GpioWires()
    wires_at = await wires.start()
    gateway = city.add_gateway("Takengon")
    gateway.extra_args = ("--config", str(wired_config(tmp_path / "gateway.toml", wires_at)))
    with city.store() as store:
        store.enroll_board(BOARD, kind="air", site_id="takengon", gateway_id=GATEWAY)
    spec = BoardSpec(BOARD, "air", "Takengon", seed=7, config={**FAST, "health_every": 1})
    board: BoardRunner = runner_for("cpython")(
        spec, tmp_path / "boards" / BOARD, gateway.address, rfc2217=True
    )
    chip = board.chip
    assert chip is not None
    wires.wire(EN, chip, "en")
    wires.wire(IO0, chip, "io0")
    try:
        await asyncio.to_thread(gateway.start)
        await asyncio.to_thread(city.serve)
        board.start()
        assert await eventually(lambda: board_health(city).get("boot_count") == 1, 40), (
            gateway.stderr_text()[-2000:]
        )
        assert board.record.boots == 1

        # power_cycle: EN pulled low 100 ms by the gateway's GPIO, and the board reboots.
        assert lines(wires)[-2:] == [(EN, True), (IO0, True)]  # both released at start
        wires.received.clear()
        code, reply = await asyncio.to_thread(command, city, "power_cycle", BOARD)
        assert code == 0, reply
        assert reply["ok"] is True
        assert reply["result"] == {
            "board": BOARD, "action": "power_cycle", "en_low_ms": 100, "io0": "high",
        }  # fmt: skip
        assert lines(wires) == [(EN, False), (EN, True)]
        assert await eventually(lambda: board_health(city).get("boot_count") == 2, 40)
        assert board.record.boots == 2
        assert board_health(city)["reset_cause"] == "power_on"

        # bootloader: IO0 held low across the EN pulse: the ROM's serial bootloader waits.
        wires.received.clear()
        code, reply = await asyncio.to_thread(command, city, "bootloader", BOARD)
        assert code == 0, reply
        assert reply["ok"] is True
        assert reply["result"]["io0"] == "low"
        assert lines(wires) == [(IO0, False), (EN, False), (EN, True), (IO0, True)]
        assert await eventually(lambda: chip.mode == "download", 5), chip.mode
        await asyncio.sleep(1.5)
        assert chip.mode == "download"  # it stays there: IO0's release is no reset
        assert board.record.boots == 2

        # A board with no lines wired gets a clear refusal, and nothing moves.
        wires.received.clear()
        code, reply = await asyncio.to_thread(command, city, "power_cycle", "takengon-air-001")
        assert code == 1
        assert reply["ok"] is False
        assert "no EN/IO0 lines" in reply["error"]
        assert BOARD in reply["error"]  # the boards that are wired
        assert lines(wires) == []

        # Out of the bootloader by another power_cycle: MicroPython boots again.
        code, reply = await asyncio.to_thread(command, city, "power_cycle", BOARD)
        assert code == 0, reply
        assert await eventually(lambda: board_health(city).get("boot_count") == 3, 40)

        # The fleet sees the gateway's GPIO in its state; every command is audited.
        def pi_state() -> dict[str, Any]:
            listing = city.fleet("gateways", "--json")
            (gw,) = json.loads(listing.stdout)["gateways"]
            health: dict[str, Any] = gw["last_state"] or {}  # the state's health part
            return health

        assert await eventually(lambda: "pi" in pi_state(), 20)
        health = pi_state()
        assert health["pi"]["wired_boards"] == [BOARD]
        assert health["pi"]["led"] in ("all_well", "boards_silent", "uplink_down")
        assert "cpu_temp_c" in health
        assert health["load1"] is not None
        with city.store() as store:
            actions = [e.action for e in store.audit_entries()]
        assert actions.count("command.power_cycle") == 3
        assert actions.count("command.bootloader") == 1
    finally:
        await board.stop()
        await wires.stop()
