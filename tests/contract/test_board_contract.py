"""The board contract (hw/contract.py), proved in behaviour on every board the firmware runs
on: the CPython engine's, the MicroPython VM engine's, and a real ESP32 when
``SIMPUL_TEST_PORT`` names its serial port. Each test calls the contract's methods at the
board's REPL, over its serial port, as a technician's tool would; one suite, every board.

Where only an emulated board can be made to show a behaviour (its link pulled down, a UDP
peer on this machine), the test says so and a real board skips that part.
"""

from __future__ import annotations

import time

import pytest

from hw.contract import RESET_CAUSE_NAMES
from hw.engines.micropython import ESP32_HEAP
from hw.profiles import BME280_ADDRESS, FITTED
from tests.contract.repl_board import ReplBoard

pytestmark = pytest.mark.slow

SLEPT = """\
async def _slept(ms):
    t = _b.ticks_ms()
    await _b.sleep_ms(ms)
    return _b.ticks_diff(_b.ticks_ms(), t)
"""

ECHO = """\
async def _echo(host, port):
    link = _b.udp(host, port)
    try:
        quiet = await link.recv(100)
        link.send(b"ping \\x00\\xff")
        answer = await link.recv(2000)
    finally:
        link.close()
    return quiet, answer
"""


async def test_fitted_buses_answer_and_an_absent_bus_is_a_valueerror(board: ReplBoard) -> None:
    kind = await board.eval("_b.config['kind']")
    fitted = FITTED[kind]
    if "i2c" in fitted:
        assert BME280_ADDRESS in await board.eval("_b.bus('i2c').scan()")
    volts = await board.eval("_b.bus('vbat').read_uv() * 2 / 1e6")
    assert 3.0 < volts < 4.5  # a Li-ion cell behind the 1:2 divider
    assert await board.error("_b.bus('periscope')") == "ValueError"


async def test_flash_files_round_trip_by_absolute_path(board: ReplBoard) -> None:
    await board.exec(
        "f = _b.flash\n"
        "f.mkdir('/contract')\n"
        "f.mkdir('/contract')\n"  # a second time: no error, as the firmware relies on
        "w = f.open('/contract/a.bin', 'wb')\n"
        "w.write(b'\\x00\\x01contract')\n"
        "w.close()\n"
    )
    assert await board.eval("_b.flash.size('/contract/a.bin')") == 10
    assert await board.eval("_b.flash.size('/contract/none')") == -1
    assert await board.eval("_b.flash.listdir('/contract')") == ["a.bin"]
    await board.exec("_b.flash.rename('/contract/a.bin', '/contract/b.bin')")
    assert await board.eval("_b.flash.open('/contract/b.bin', 'rb').read()") == b"\x00\x01contract"
    await board.exec("_b.flash.remove('/contract/b.bin')")
    assert await board.eval("_b.flash.listdir('/contract')") == []


async def test_ticks_count_milliseconds_from_power_on_and_wrap_at_2_30(board: ReplBoard) -> None:
    assert await board.eval("_b.ticks_diff(0, (1 << 30) - 1)") == 1
    assert await board.eval("_b.ticks_diff((1 << 30) - 1, 0)") == -1
    assert await board.eval("_b.ticks_diff(5, 2)") == 3
    assert 0 <= await board.eval("_b.ticks_ms()") < 1 << 30


async def test_sleep_ms_waits_that_long(board: ReplBoard) -> None:
    await board.exec(SLEPT)
    slept = await board.run("_slept(150)")
    assert 150 <= slept < 2000


async def test_time_ms_is_the_unix_epoch_in_milliseconds(board: ReplBoard) -> None:
    board_ms = await board.eval("_b.time_ms()")
    assert abs(board_ms - time.time() * 1000) < 60_000


async def test_reset_cause_names_why_this_boot_happened(board: ReplBoard) -> None:
    cause = await board.eval("_b.reset_cause()")
    assert cause in RESET_CAUSE_NAMES
    if board.runner is not None:
        assert cause == "power_on"  # an emulated board's first boot


async def test_feed_watchdog_returns_at_once(board: ReplBoard) -> None:
    assert await board.eval("_b.feed_watchdog()") is None


async def test_mem_is_free_and_allocated_heap(board: ReplBoard) -> None:
    free, allocated = await board.eval("_b.mem()")
    assert isinstance(free, int)
    assert isinstance(allocated, int)
    assert free > 0
    assert allocated > 0
    if board.runner is not None:
        assert free + allocated == ESP32_HEAP  # both engines reckon against one ESP32
    else:
        assert free + allocated < 8 << 20


async def test_rssi_is_a_fading_signal_in_dbm_and_none_without_a_link(board: ReplBoard) -> None:
    readings = await board.eval("[_b.rssi() for _ in range(20)]")
    assert all(isinstance(r, int) and -100 <= r <= -20 for r in readings), readings
    if board.runner is None:
        return
    assert len(set(readings)) > 1, "an emulated radio fades from one reading to the next"
    board.runner.faults.link.down = True
    assert await board.eval("_b.rssi()") is None


async def test_urandom_gives_fresh_bytes(board: ReplBoard) -> None:
    first, second = await board.eval("(_b.urandom(16), _b.urandom(16))")
    assert isinstance(first, bytes)
    assert len(first) == len(second) == 16
    assert first != second


async def test_log_writes_one_line_on_the_serial_console(board: ReplBoard) -> None:
    out = await board.exec("_b.log('contract: one line')")
    assert out.splitlines() == ["contract: one line"]


async def test_udp_link_carries_datagrams_both_ways_and_times_out(
    board: ReplBoard, echo_server: tuple[str, int]
) -> None:
    if board.runner is None:
        pytest.skip("a real board reaches this machine only over its Wi-Fi")
    host, port = echo_server
    await board.exec(ECHO)
    quiet, answer = await board.run(f"_echo({host!r}, {port})")
    assert quiet is None
    assert answer == b"ping \x00\xff"


async def test_reset_and_deepsleep_restart_the_board_with_their_cause(board: ReplBoard) -> None:
    await board.restart("reset()", "soft")
    assert await board.eval("_b.reset_cause()") == "soft"
    await board.restart("deepsleep(200)", "deepsleep")
    assert await board.eval("_b.reset_cause()") == "deepsleep"
