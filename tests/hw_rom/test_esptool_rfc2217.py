"""The unmodified esptool (--no-stub) and pyserial against an emulated ESP32's RFC 2217
port: esptool enters the ROM bootloader by its own DTR/RTS reset sequence, identifies the
chip, writes and verifies MicroPython; a normal reset then boots the REPL. The line's faults
and a program that ignores Ctrl-C act as they would on a bench."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial

from hw.engines import ENGINES
from hw.engines.base import BoardRunner
from hw.esp_image import micropython_firmware_bin
from tests.support import eventually, rfc2217_board

ESPTOOL_TIMEOUT_S = 60


@pytest.fixture
async def blank_board(tmp_path: Path) -> AsyncIterator[BoardRunner]:
    async with rfc2217_board("cpython", tmp_path, blank=True) as runner:
        yield runner


async def esptool(board: BoardRunner, *args: str) -> tuple[int, str]:
    """esptool as a technician runs it; (exit code, output)."""
    assert board.rfc2217_url is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "esptool",
        "--port",
        board.rfc2217_url,
        "--no-stub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), ESPTOOL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def open_port(board: BoardRunner) -> serial.Serial:
    """A pyserial client on the board's RFC 2217 port, opened off the board's event loop
    (its negotiation waits for the board to answer)."""
    assert board.rfc2217_url is not None
    port: serial.Serial = await asyncio.to_thread(
        serial.serial_for_url, board.rfc2217_url, timeout=0.2
    )
    return port


async def set_lines(port: serial.Serial, **lines: bool) -> None:
    """Set DTR and/or RTS in the given order, each waiting for the server's answer."""
    for name, level in lines.items():
        await asyncio.to_thread(setattr, port, name, level)


async def read_until(port: serial.Serial, wanted: bytes, within: float = 10) -> bytes:
    seen = bytearray()
    deadline = time.monotonic() + within
    while wanted not in seen:
        chunk = await asyncio.to_thread(port.read, 4096)
        seen += chunk
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {wanted!r}; got {bytes(seen)[-300:]!r}")
    return bytes(seen)


async def test_a_blank_chip_prints_the_roms_invalid_header_loop(blank_board: BoardRunner) -> None:
    assert blank_board.rfc2217_url is not None
    port = await open_port(blank_board)
    try:
        seen = await read_until(port, b"rst:0x10 (RTCWDT_RTC_RESET),boot:0x13", within=5)
        assert b"invalid header: 0xffffffff\r\n" in seen
    finally:
        await asyncio.to_thread(port.close)


async def test_esptool_enters_the_rom_by_its_own_reset_and_reads_chip_and_mac(
    blank_board: BoardRunner,
) -> None:
    code, out = await esptool(blank_board, "chip-id")
    assert code == 0, out
    assert "Chip type:          ESP32-D0WD-V3 (revision v3.1)" in out
    assert "MAC:                24:0a:c4:" in out
    assert blank_board.chip is not None
    assert blank_board.chip.mode == "invalid_header"  # esptool's hard reset: blank again


# About 45 s: esptool over RFC 2217 waits ~0.1 s on every timeout change, twice a block.
# One engine: what follows the flash is the REPL both engines share (hw/serial_repl.py),
# which tests/hw_serial drives on the VM too.
@pytest.mark.slow
async def test_esptool_writes_and_verifies_micropython_which_then_runs_code(
    tmp_path: Path,
) -> None:
    engine = "cpython"
    firmware = tmp_path / "firmware.bin"
    firmware.write_bytes(micropython_firmware_bin())
    async with rfc2217_board(engine, tmp_path, blank=True) as board:
        code, out = await esptool(board, "write-flash", "0x1000", str(firmware))
        assert code == 0, out
        assert "Hash of data verified." in out
        assert "Hard resetting via RTS pin" in out
        # esptool's hard reset boots the flash: MicroPython, nothing on its filesystem
        assert await eventually(lambda: board.bare and board.repl is not None, 10)
        assert board.rfc2217_url is not None
        port = await open_port(board)
        try:
            port.write(b"\x03\x01")  # raw REPL, as a tool enters it
            await read_until(port, b"raw REPL; CTRL-B to exit\r\n>")
            # an empty filesystem: no boot.py, no main.py (the VM engine shows its /rom mount)
            port.write(b"import os; print(6 * 7, [n for n in os.listdir('/') if '.' in n])\x04")
            assert b"OK42 []\r\n\x04\x04>" in await read_until(port, b"\x04>")
        finally:
            await asyncio.to_thread(port.close)
        # write-flash verified the written bytes by the ROM's MD5 ("Hash of data verified");
        # verify-flash must tell another image from them.
        firmware.write_bytes(micropython_firmware_bin("v1.26.1"))
        code, out = await esptool(board, "verify-flash", "0x1000", str(firmware))
        assert code != 0
        assert "MISMATCH" in out.upper()


@pytest.mark.slow  # about 15 s: esptool over RFC 2217 waits ~0.1 s per timeout change
async def test_a_corrupting_line_is_refused_by_the_roms_checksum(
    blank_board: BoardRunner, tmp_path: Path
) -> None:
    image = tmp_path / "small.bin"
    image.write_bytes(bytes(range(256)) * 8)
    # Past esptool's connection and flash setup, every 300th byte arrives inverted.
    blank_board.faults.serial.received = 0
    blank_board.faults.serial.corrupt_every = 300
    code, out = await esptool(blank_board, "write-flash", "0x20000", str(image))
    assert code != 0
    assert "error" in out.lower(), out  # esptool reports what the ROM refused
    assert blank_board.faults.serial.received > 0
    assert blank_board.chip is not None
    assert blank_board.chip.flash.read(0x20000, 2048) != image.read_bytes()


async def test_dtr_rts_from_a_tool_reset_the_board_and_hold_it_in_reset(
    tmp_path: Path,
) -> None:
    async with rfc2217_board("cpython", tmp_path) as board:
        assert board.rfc2217_url is not None
        port = await open_port(board)
        try:
            boots = board.record.boots
            await set_lines(port, dtr=False, rts=True)  # EN low: in reset
            assert await eventually(lambda: not board.main_running, 5)
            await asyncio.sleep(0.5)
            assert board.record.boots == boots  # held: nothing boots while EN is low
            await set_lines(port, rts=False)  # EN high, IO0 high: a normal boot into the firmware
            assert await eventually(lambda: board.record.boots == boots + 1, 5)
            assert await eventually(lambda: board.main_running, 5)
            await read_until(port, b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)")
        finally:
            await asyncio.to_thread(port.close)


async def test_a_line_that_drops_bytes_loses_what_is_typed(tmp_path: Path) -> None:
    async with rfc2217_board("cpython", tmp_path) as board:
        assert board.rfc2217_url is not None
        port = await open_port(board)
        try:
            port.write(b"\x03")
            await read_until(port, b">>> ")
            board.faults.serial.received = 0
            board.faults.serial.drop_every = 3
            port.write(b"print(123456)")
            await asyncio.sleep(0.5)
            echo = await asyncio.to_thread(port.read, 4096)
            assert echo == b"prnt1245)", echo  # every third byte lost
            board.faults.serial.drop_every = None
            port.write(b"\x03print(123456)\r")
            assert b"\r\n123456\r\n>>> " in await read_until(port, b"123456\r\n>>> ")
        finally:
            await asyncio.to_thread(port.close)


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_program_that_ignores_ctrl_c_keeps_the_raw_repl_out_until_boot_and_en(
    engine: str, tmp_path: Path
) -> None:
    async with rfc2217_board(engine, tmp_path) as board:
        board.faults.serial.ignores_ctrl_c = True
        assert board.rfc2217_url is not None
        port = await open_port(board)
        try:
            port.write(b"\r\x03\x03\x01")
            await asyncio.sleep(1.0)
            seen = await asyncio.to_thread(port.read, 65536)
            assert b"raw REPL" not in seen
            assert b">>>" not in seen
            assert board.main_running
            # The technician holds BOOT and presses EN: the ROM bootloader answers.
            assert board.chip is not None
            await board.chip.press_en(hold_boot=True)
            await read_until(port, b"waiting for download\r\n")
            assert board.chip.mode == "download"
        finally:
            await asyncio.to_thread(port.close)
