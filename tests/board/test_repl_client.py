"""The raw REPL client and file transfer against emulated boards' real ptys, both engines:
raw-paste under flow control, SHA-256 on the board, lost bytes retried in smaller pieces,
and a transfer cut short (port closed, power cut) that never replaces the old file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
import serial

from fleet.board.errors import BoardLost, BytesDropped, IgnoresCtrlC, NoBoard, PortBusy
from fleet.board.ports import open_port
from fleet.board.repl import RawRepl
from fleet.board.transfer import BoardFile, Transfer
from hw.engines.base import BoardRunner
from tests.support import eventually


class Lossy:
    """A port that loses one byte of every write longer than ``above`` bytes."""

    def __init__(self, port: serial.SerialBase, above: int) -> None:
        self._port = port
        self.above = above
        self.timeout = port.timeout

    def write(self, data: bytes) -> int:
        if len(data) > self.above:
            data = data[:7] + data[8:]
        return int(self._port.write(data) or 0)

    def read(self, size: int = 1) -> bytes:
        return bytes(self._port.read(size))

    @property
    def in_waiting(self) -> int:
        return int(self._port.in_waiting)

    def close(self) -> None:
        self._port.close()


class CutAfter(Lossy):
    """A port whose cable is pulled once ``limit`` bytes were written."""

    def __init__(self, port: serial.SerialBase, limit: int) -> None:
        super().__init__(port, above=1 << 30)
        self.limit = limit

    def write(self, data: bytes) -> int:
        self.limit -= len(data)
        if self.limit < 0:
            self._port.close()
            raise serial.SerialException("device reports readiness to read but returned no data")
        return super().write(data)


def flash_file(board: BoardRunner, path: str) -> Path:
    return board.root / "flash" / path.lstrip("/")


async def test_put_verifies_on_the_board_and_get_reads_back(board: BoardRunner) -> None:
    assert board.serial_path is not None
    data = os.urandom(5000)

    def work() -> tuple[bytes, str, bool | None]:
        port = open_port(board.serial_path or "")
        try:
            repl = RawRepl(port, "pty")
            repl.enter()
            staged = Transfer(repl).put([BoardFile("/a/blob.mpy", data)])
            return Transfer(repl).get("/a/blob.mpy"), staged[0].sha256, repl.raw_paste
        finally:
            port.close()

    back, sha, raw_paste = await asyncio.to_thread(work)
    assert raw_paste is True  # both engines offer raw-paste, and it was used
    assert back == data
    assert sha == hashlib.sha256(data).hexdigest()
    assert flash_file(board, "/a/blob.mpy").read_bytes() == data
    assert not flash_file(board, "/a/blob.mpy.part").exists()


async def test_lost_bytes_are_sent_again_in_smaller_pieces(board: BoardRunner) -> None:
    data = os.urandom(3000)

    def work() -> int:
        port = Lossy(open_port(board.serial_path or ""), above=200)
        try:
            repl = RawRepl(port, "pty")
            repl.enter()
            transfer = Transfer(repl)
            transfer.put([BoardFile("/blob.bin", data)])
            return transfer.retries
        finally:
            port.close()

    retries = await asyncio.to_thread(work)
    assert retries >= 1  # long bursts lost a byte; shorter ones got through
    assert flash_file(board, "/blob.bin").read_bytes() == data


async def test_a_line_that_always_loses_bytes_gives_up_with_a_message(
    board: BoardRunner,
) -> None:
    def work() -> None:
        port = Lossy(open_port(board.serial_path or ""), above=8)
        try:
            repl = RawRepl(port, "pty")
            repl.enter()
            Transfer(repl).put([BoardFile("/blob.bin", b"x" * 300)])
        finally:
            port.close()

    with pytest.raises(BytesDropped, match="lost"):
        await asyncio.to_thread(work)
    assert not flash_file(board, "/blob.bin").exists()


@pytest.mark.parametrize("cut", ["cable", "power"])
async def test_a_cut_transfer_never_replaces_the_old_file_and_the_board_boots(
    board: BoardRunner, cut: str
) -> None:
    config = flash_file(board, "/config.json")
    old = config.read_bytes()
    new = old.replace(b'"kind"', b'"note": "' + b"n" * 4000 + b'", "kind"')
    boots = board.record.boots

    def work() -> None:
        raw = open_port(board.serial_path or "")
        port = CutAfter(raw, limit=4000) if cut == "cable" else Lossy(raw, above=1 << 30)
        try:
            repl = RawRepl(port, "pty")
            repl.enter()
            transfer = Transfer(repl)
            transfer._exec("pass")  # the helpers are on the board
            if cut == "power":  # the power goes in the third flash write from here
                faults = board.faults.flash
                faults.cut_at_life_write = faults.life_writes + 3
            transfer.put([BoardFile("/config.json", new)])
        finally:
            port.close()

    with pytest.raises(BoardLost):
        await asyncio.to_thread(work)
    assert config.read_bytes() == old
    if cut == "power":
        assert await eventually(lambda: board.record.boots > boots, 30)
    else:  # a pulled USB cable takes the board's power with it; plugged in again, it boots
        await board.power_cut()
    sampled = len(board.record.samples)
    assert await eventually(lambda: len(board.record.samples) > sampled, 30), "it never booted"


def _pty_peer(behaviour: str) -> tuple[str, threading.Event]:
    """A real pty whose other end chatters ignoring Ctrl-C, or says nothing."""
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            if behaviour == "chatter":
                os.write(master, b"S 1 2 3\r\n")
            time.sleep(0.05)
            try:
                os.set_blocking(master, False)
                os.read(master, 1024)  # Ctrl-C, Ctrl-A: heard and ignored
            except BlockingIOError:
                pass
        os.close(master)
        os.close(slave)

    threading.Thread(target=chatter, daemon=True).start()
    return os.ttyname(slave), stop


@pytest.mark.parametrize(
    ("behaviour", "error", "says"),
    [("chatter", IgnoresCtrlC, "hold BOOT"), ("silent", NoBoard, "no board answers")],
)
def test_a_board_that_ignores_ctrl_c_or_says_nothing_gets_its_message(
    behaviour: str, error: type[Exception], says: str
) -> None:
    path, stop = _pty_peer(behaviour)
    try:
        port = open_port(path)
        try:
            with pytest.raises(error, match=says):
                RawRepl(port, path).enter(within=1.0)
        finally:
            port.close()
    finally:
        stop.set()


def test_a_busy_port_names_who_holds_it_and_a_missing_one_says_so(tmp_path: Path) -> None:
    path, stop = _pty_peer("silent")
    try:
        held = serial.serial_for_url(path, exclusive=True)
        try:
            # Another process looks: it is told this one (pytest) holds the port.
            import subprocess
            import sys

            code = (
                "from fleet.board.ports import open_port\n"
                f"try:\n    open_port({path!r})\nexcept Exception as e:\n    print(e)\n"
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
            ).stdout
            assert "busy" in out
            assert f"pid {os.getpid()}" in out
        finally:
            held.close()
    finally:
        stop.set()
    with pytest.raises(NoBoard, match="plugged in"):
        open_port(str(tmp_path / "ttyUSB9"))
    assert PortBusy is not None
