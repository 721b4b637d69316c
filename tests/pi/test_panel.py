"""The GPIO in a running gateway (in this process, pins on a MockFactory): the LED follows
the gateway's state, the button opens pairing and shuts the daemon down, and the control
process's channel reaches the lines."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from gateway.cli import serve
from gateway.daemon import Gateway
from gateway.pi import channel
from gateway.pi.status import ALL_WELL, PAIRING, SHUTTING_DOWN
from tests.gateway.conftest import gateway_config
from tests.support import eventually

LED, BUTTON, EN, IO0 = 17, 27, 23, 24
BOARD = "tkg-air-0001"
HOLD_S = 0.4


def pi_settings(**more: Any) -> dict[str, Any]:
    return {
        "pi.status_led": LED,
        "pi.button": BUTTON,
        "pi.hold_s": HOLD_S,
        "pi.pairing_window_s": 60,
        f"pi.boards.{BOARD}.en": EN,
        f"pi.boards.{BOARD}.io0": IO0,
        **more,
    }


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Gateway, MockFactory]]:
    factory = MockFactory()
    gateway = Gateway(gateway_config(tmp_path / "state", **pi_settings()), pin_factory=factory)
    await gateway.start()
    try:
        yield gateway, factory
    finally:
        await gateway.stop()
        factory.close()


async def ask(gateway: Gateway, request: dict[str, Any]) -> dict[str, Any]:
    path = channel.socket_path(gateway.config.state_dir)
    return await asyncio.to_thread(channel.ask, path, request)


async def press(factory: MockFactory, seconds: float) -> None:
    pin = factory.pin(BUTTON)
    pin.drive_low()
    await asyncio.sleep(seconds)
    pin.drive_high()


async def test_a_quiet_gateway_is_all_well(running: tuple[Gateway, MockFactory]) -> None:
    gateway, _factory = running
    assert gateway.pi is not None
    assert gateway.pi.state == ALL_WELL
    answer = await ask(gateway, {"op": "status"})
    assert answer["ok"] is True
    assert answer["result"]["led"] == ALL_WELL
    assert answer["result"]["wired_boards"] == [BOARD]
    assert answer["result"]["pairing"]["open"] is False


async def test_a_short_press_opens_a_pairing_window(running: tuple[Gateway, MockFactory]) -> None:
    gateway, factory = running
    await press(factory, 0.1)
    assert await eventually(lambda: gateway.pi is not None and gateway.pi.state == PAIRING, 3)
    status = (await ask(gateway, {"op": "status"}))["result"]
    assert status["pairing"]["open"] is True
    assert 55 <= status["pairing"]["left_s"] <= 60
    assert status["led"] == PAIRING
    led = factory.pin(LED)
    led.clear_states()
    await asyncio.sleep(0.6)
    assert len(led.states) >= 2  # blinking (its times: tests/pi/test_status_led.py)
    assert not gateway.shutdown.is_set()


async def test_a_long_press_asks_the_daemon_to_shut_down(
    running: tuple[Gateway, MockFactory],
) -> None:
    gateway, factory = running
    await press(factory, HOLD_S + 0.3)
    assert await eventually(gateway.shutdown.is_set, 3)
    assert gateway.pi is not None
    assert gateway.pi.state == SHUTTING_DOWN
    assert factory.pin(LED).state is True  # steady on while it stops


async def test_the_channel_resets_a_wired_board(running: tuple[Gateway, MockFactory]) -> None:
    gateway, factory = running
    en, io0 = factory.pin(EN), factory.pin(IO0)
    en.clear_states()
    io0.clear_states()
    answer = await ask(gateway, {"op": "power_cycle", "board": BOARD})
    assert answer == {
        "ok": True,
        "result": {"board": BOARD, "action": "power_cycle", "en_low_ms": 100, "io0": "high"},
    }
    en.assert_states_and_times([(0.0, True), (0.0, False), (0.1, True)])
    assert [s.state for s in io0.states] == [True]

    en.clear_states()
    io0.clear_states()
    answer = await ask(gateway, {"op": "bootloader", "board": BOARD})
    assert answer["ok"] is True
    assert answer["result"]["io0"] == "low"
    en.assert_states([True, False, True])
    io0.assert_states([True, False, True])


async def test_the_channel_refuses_what_it_cannot_do(running: tuple[Gateway, MockFactory]) -> None:
    gateway, _ = running
    answer = await ask(gateway, {"op": "power_cycle", "board": "tkg-air-0404"})
    assert answer["ok"] is False
    assert "no EN/IO0 lines" in answer["error"]
    answer = await ask(gateway, {"op": "format_disk"})
    assert answer["ok"] is False
    assert "unknown op" in answer["error"]
    path = channel.socket_path(gateway.config.state_dir)
    raw = await asyncio.to_thread(_raw, path, b"{not json\n")
    assert b'"ok": false' in raw


def _raw(path: Path, data: bytes) -> bytes:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(data)
        return sock.recv(4096)


async def test_no_pi_table_starts_no_gpio(tmp_path: Path) -> None:
    gateway = Gateway(gateway_config(tmp_path / "state"))
    await gateway.start()
    try:
        assert gateway.pi is None
        assert not channel.socket_path(gateway.config.state_dir).exists()
    finally:
        await gateway.stop()


async def test_a_long_press_stops_the_daemon_then_runs_the_shutdown_command_once(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    marker = tmp_path / "shutdown.log"
    sock = channel.socket_path(state)
    # Records whether the daemon was already stopped (its socket gone) when it ran.
    command = (
        f"{sys.executable} -c \"import os; open({str(marker)!r}, 'a')"
        f".write(str(os.path.exists({str(sock)!r})) + '\\n')\""
    )
    config = gateway_config(state, **pi_settings(**{"pi.shutdown_command": command}))
    factory = MockFactory()
    served = asyncio.create_task(serve(config, pin_factory=factory))
    try:
        assert await eventually(sock.exists, 20)
        await press(factory, HOLD_S + 0.3)
        assert await asyncio.wait_for(served, 30) == 0
    finally:
        served.cancel()
        factory.close()
    assert marker.read_text() == "False\n"


async def test_an_outbox_near_its_budget_shows_disk_nearly_full_on_the_led(tmp_path: Path) -> None:
    from gateway.pi.status import DISK_NEARLY_FULL
    from gateway.store.registry import StoreReader

    factory = MockFactory()
    state_dir = tmp_path / "state"
    gateway = Gateway(gateway_config(state_dir, **pi_settings()), pin_factory=factory)
    await gateway.start()
    try:
        assert gateway.pi is not None
        assert gateway.pi.state == ALL_WELL
    finally:
        await gateway.stop()
    reader = StoreReader(gateway.config.db_path)
    used = reader.used_bytes()
    reader.close()
    # The same store with a budget it fills past 90 %: the health's disk verdict and the LED.
    budget = int(used / 0.95)
    config = gateway_config(state_dir, **pi_settings(), **{"outbox.max_bytes": budget})
    gateway = Gateway(config, pin_factory=factory)
    await gateway.start()
    try:
        assert gateway.stats()["disk"]["state"] == "nearly_full"
        assert await eventually(
            lambda: gateway.pi is not None and gateway.pi.state == DISK_NEARLY_FULL, 3
        )
    finally:
        await gateway.stop()
        factory.close()
