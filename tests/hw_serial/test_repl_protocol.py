"""MicroPython's serial protocol byte for byte, as ``shared/runtime/pyexec.c`` speaks it, on
both engines: Ctrl-C, the friendly REPL, the raw REPL, raw-paste flow control, soft reboot."""

from __future__ import annotations

import asyncio

from hw.engines.base import BoardRunner
from hw.serial_repl import continues
from tests.hw_serial.conftest import Terminal, wait_for

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


async def interrupt(board: BoardRunner, terminal: Terminal) -> None:
    terminal.send(b"\x03")
    await terminal.expect(b"KeyboardInterrupt: \r\n")
    banner = board.banner().encode() + b'\r\nType "help()" for more information.\r\n>>> '
    assert await terminal.expect(banner) == banner
    assert not board.main_running


async def test_firmware_console_goes_out_until_ctrl_c_stops_it(
    board: BoardRunner, terminal: Terminal
) -> None:
    await terminal.expect(b"\r\nS ")  # the firmware's sample lines, CR LF as a board sends
    await interrupt(board, terminal)
    sampled = len(board.record.samples)
    await asyncio.sleep(1.0)  # three cycles
    assert len(board.record.samples) == sampled, "the firmware kept sampling after Ctrl-C"
    assert b"\nS " not in await terminal.drain()


async def test_friendly_repl_echoes_evaluates_and_continues_blocks(
    board: BoardRunner, terminal: Terminal
) -> None:
    await interrupt(board, terminal)
    terminal.send(b"6*7\r")
    assert await terminal.expect(b">>> ") == b"6*7\r\n42\r\n>>> "
    terminal.send(b"for i in range(2):\r")
    assert await terminal.expect(b"... ") == b"for i in range(2):\r\n... "
    terminal.send(b"    print('n', i)\r")
    await terminal.expect(b"... ")
    terminal.send(b"\r")
    assert await terminal.expect(b">>> ") == b"\r\nn 0\r\nn 1\r\n>>> "
    terminal.send(b"undefined_name\r")
    out = await terminal.expect(b">>> ")
    assert b"NameError" in out
    terminal.send(b"abc\x03")  # Ctrl-C drops the line
    assert await terminal.expect(b">>> ") == b"abc\r\n>>> "


async def test_raw_repl_answers_ok_output_eof_error_eof(
    board: BoardRunner, terminal: Terminal
) -> None:
    await interrupt(board, terminal)
    terminal.send(b"\x01")
    await terminal.expect(RAW_BANNER)
    terminal.send(b"print('out')\x04")
    assert await terminal.expect(b"\x04>") == b"OKout\r\n\x04\x04>"
    terminal.send(b"print('x')\nraise ValueError('bad')\x04")
    got = await terminal.expect(b"\x04>")
    assert got.startswith(b"OKx\r\n\x04Traceback (most recent call last):\r\n")
    assert got.endswith(b"ValueError: bad\r\n\x04>")
    terminal.send(b"junk\x03print(1)\x04")  # Ctrl-C clears what was typed
    assert await terminal.expect(b"\x04>") == b"OK1\r\n\x04\x04>"
    terminal.send(b"\x02")  # back to the friendly REPL
    await terminal.expect(b'Type "help()" for more information.\r\n>>> ')


async def test_raw_paste_mode_flow_control(board: BoardRunner, terminal: Terminal) -> None:
    await interrupt(board, terminal)
    terminal.send(b"\x01")
    await terminal.expect(RAW_BANNER)
    terminal.send(b"\x05A\x01")
    # Accepted, a window of 128 bytes (u16 LE), and a first window granted at once.
    assert await terminal.expect(b"R\x01\x80\x00\x01") == b"R\x01\x80\x00\x01"
    lines = b"".join(b"x%d = %d\n" % (i, i) for i in range(60)) + b"print(x59 + 1)\n"
    assert len(lines) > 3 * 128
    # Send one window at a time, only when the board grants it, as mpremote does.
    window, sent = 128 * 2, 0  # the header's window, plus the first \x01
    grants = 0
    while sent < len(lines):
        chunk = lines[sent : sent + window]
        terminal.send(chunk)
        sent += len(chunk)
        window -= len(chunk)
        if sent < len(lines):
            await terminal.expect(b"\x01")
            grants += 1
            window += 128
    terminal.send(b"\x04")
    ack = await terminal.expect(b"\x04")  # end of data acknowledged
    assert ack.strip(b"\x01") == b"\x04", ack  # after any window granted meanwhile
    grants += ack.count(b"\x01")
    assert grants == len(lines) // 128  # one for every 128 bytes consumed
    assert await terminal.expect(b"\x04>") == b"60\r\n\x04\x04>"
    terminal.send(b"\x05B\x01")  # an unknown raw-paste command is refused, raw REPL stays
    assert await terminal.expect(b">") == b"R\x00>"


async def test_soft_reboot_from_friendly_repl_restarts_the_firmware(
    board: BoardRunner, terminal: Terminal
) -> None:
    await interrupt(board, terminal)
    boots = board.record.boots
    terminal.send(b"\x04")
    await terminal.expect(b"MPY: soft reboot\r\n")
    await terminal.expect(b"cause soft\r\n")  # the firmware's boot line, on the serial port
    assert board.record.boots == boots + 1
    assert await wait_for(lambda: board.main_running, 10)
    sampled = len(board.record.samples)
    assert await wait_for(lambda: len(board.record.samples) > sampled, 10)


async def test_soft_reboot_in_raw_repl_stays_in_raw_repl(
    board: BoardRunner, terminal: Terminal
) -> None:
    await interrupt(board, terminal)
    terminal.send(b"\x01")
    await terminal.expect(RAW_BANNER)
    terminal.send(b"seen = 1\x04")
    await terminal.expect(b"\x04>")
    terminal.send(b"\x04")
    assert await terminal.expect(RAW_BANNER) == b"OK\r\nMPY: soft reboot\r\n" + RAW_BANNER
    assert not board.main_running
    terminal.send(b"print('seen' in globals())\x04")  # a soft reboot clears the REPL's globals
    assert await terminal.expect(b"\x04>") == b"OKFalse\r\n\x04\x04>"


def test_friendly_repl_continues_compound_statements_and_open_brackets() -> None:
    assert continues("for i in x:")
    assert continues("for i in x:\n    pass")
    assert not continues("for i in x:\n    pass\n")
    assert continues("f(1,")
    assert continues('s = """abc')
    assert not continues("x = '(:'")
    assert not continues("x = 1  # a comment:")
    assert continues("if x:  # a comment")
    assert not continues("1 + 1")
    assert not continues("s = '''abc'''")
