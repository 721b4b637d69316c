"""The official mpremote, unmodified, drives every emulated board's serial port, on both
engines, as it drives an ESP32 on /dev/ttyUSB0."""

from __future__ import annotations

from pathlib import Path

from hw.engines.base import BoardRunner
from tests.hw_serial.conftest import mpremote, wait_for


async def test_mpremote_exec_and_eval_run_on_the_board(board: BoardRunner) -> None:
    code, out = await mpremote(
        board, "exec", "import sys; print('up', 6 * 7, sys.implementation.name)"
    )
    assert code == 0, out
    # On the VM engine the code ran in MicroPython itself.
    assert f"up 42 {'micropython' if board.engine == 'mpy' else 'cpython'}" in out
    code, out = await mpremote(board, "eval", "sum(range(5))")
    assert (code, out.strip()) == (0, "10")
    code, out = await mpremote(board, "exec", "import os; print(sorted(os.listdir('/data')))")
    assert code == 0, out
    assert "'boots'" in out  # the board's own flash, as the firmware left it


async def test_mpremote_reports_errors_from_the_board(board: BoardRunner) -> None:
    code, out = await mpremote(board, "exec", "1 / 0")
    assert code == 1
    assert "ZeroDivisionError" in out


async def test_mpremote_fs_copies_both_ways_cats_lists_and_removes(
    board: BoardRunner, tmp_path: Path
) -> None:
    flash = board.root / "flash"
    payload = bytes(range(256)) * 5  # every byte value, over several 256-byte chunks
    local = tmp_path / "blob.bin"
    local.write_bytes(payload)
    code, out = await mpremote(board, "fs", "cp", str(local), ":blob.bin")
    assert code == 0, out
    assert (flash / "blob.bin").read_bytes() == payload  # on the board's flash directory

    code, out = await mpremote(board, "fs", "ls")
    assert code == 0, out
    assert "1280 blob.bin" in out
    assert "config.json" in out

    back = tmp_path / "back.bin"
    code, out = await mpremote(board, "fs", "cp", ":blob.bin", str(back))
    assert code == 0, out
    assert back.read_bytes() == payload

    (flash / "note.txt").write_text("river level sensor\nbank 2\n")
    code, out = await mpremote(board, "fs", "cat", ":note.txt")
    assert code == 0, out
    assert "river level sensor" in out
    assert "bank 2" in out

    code, out = await mpremote(board, "fs", "rm", ":blob.bin")
    assert code == 0, out
    assert not (flash / "blob.bin").exists()
    code, out = await mpremote(board, "fs", "ls")
    assert "blob.bin" not in out

    code, out = await mpremote(board, "fs", "cat", ":absent.txt")
    assert code == 1
    assert "No such file" in out or "ENOENT" in out


async def test_mpremote_soft_reset_reboots_the_board_software(board: BoardRunner) -> None:
    boots = board.record.boots
    code, out = await mpremote(board, "soft-reset")
    assert code == 0, out
    assert board.record.boots == boots + 1
    # mpremote leaves the board at its REPL, as a chip: the firmware does not run.
    assert not board.main_running
    code, out = await mpremote(board, "exec", "print('still here')")
    assert (code, out.strip()) == (0, "still here")


async def test_mpremote_reset_restarts_the_board_into_its_firmware(board: BoardRunner) -> None:
    boots = board.record.boots
    code, out = await mpremote(board, "reset")
    assert code == 0, out
    # mpremote's own soft reset on entering the raw REPL, then machine.reset().
    assert await wait_for(lambda: board.record.boots == boots + 2 and board.main_running, 20)
    sampled = len(board.record.samples)
    assert await wait_for(lambda: len(board.record.samples) > sampled, 20), "no sample after reset"
    console = (board.root / "console.log").read_text().splitlines()
    firmware_boots = [line for line in console if line.startswith("simpul ")]
    assert firmware_boots[-1].endswith("boot 2 cause soft"), firmware_boots
