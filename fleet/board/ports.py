"""Serial ports: which look like ESP32 boards, opening one, and who holds a busy one.

``simpul board list`` names the ports whose USB VID:PID is one of the bridges ESP32 boards
carry (:data:`BRIDGES`), or Espressif's own USB on the S2/S3/C3. A port is opened with
pyserial's ``serial_for_url``, so ``/dev/ttyUSB0``, a pty, ``rfc2217://host:port`` and
``socket://`` all work, and exclusively (``flock``), so two tools never interleave bytes
on one board; when another program has it, :func:`holders` names it from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import serial
from serial.tools import list_ports

from fleet.board.errors import NoBoard, PortBusy

BAUD: Final = 115200
#: Espressif's USB vendor id: the ESP32-S2/S3/C3/C6's built-in USB serial, any product id.
ESPRESSIF_VID: Final = 0x303A
#: (vid, pid) -> the bridge chip, as it is printed on the board.
BRIDGES: Final[dict[tuple[int, int], str]] = {
    (0x10C4, 0xEA60): "CP210x",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x0403, 0x6010): "FTDI FT2232",
    (0x0403, 0x6014): "FTDI FT232H",
    (0x0403, 0x6015): "FTDI FT231X",
}


@dataclass(frozen=True)
class BoardPort:
    """A serial port that looks like an ESP32 board."""

    device: str
    bridge: str
    vid: int
    pid: int
    serial_number: str | None
    description: str

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}"


def bridge_of(vid: int | None, pid: int | None) -> str | None:
    """The bridge chip a USB VID:PID names, or None if it is not an ESP32 board's."""
    if vid is None or pid is None:
        return None
    if vid == ESPRESSIF_VID:
        return "ESP32 native USB"
    return BRIDGES.get((vid, pid))


def board_ports(ports: Iterable[Any]) -> list[BoardPort]:
    """The ports (pyserial ``ListPortInfo``) that look like ESP32 boards, by device name."""
    found = []
    for port in ports:
        bridge = bridge_of(port.vid, port.pid)
        if bridge is not None:
            found.append(
                BoardPort(
                    port.device, bridge, port.vid, port.pid, port.serial_number, port.description
                )
            )
    return sorted(found, key=lambda p: p.device)


def list_board_ports() -> list[BoardPort]:
    """The ESP32 boards plugged into this computer now."""
    return board_ports(list_ports.comports())


def holders(device: str) -> list[tuple[int, str]]:
    """(pid, command line) of every other process with ``device`` open, from ``/proc``."""
    try:
        target = os.path.realpath(device)
    except OSError:
        return []
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                        found.append((int(proc.name), cmdline.decode(errors="replace")))
                        break
    return sorted(found)


def open_port(url: str, *, timeout: float = 0.02) -> serial.SerialBase:
    """The port at ``url``, opened exclusively at 115200 baud; NoBoard or PortBusy if not."""
    if "://" not in url and not os.path.exists(url):
        raise NoBoard(f"no serial port {url}: is the board's USB cable plugged in?")
    try:
        return serial.serial_for_url(url, baudrate=BAUD, timeout=timeout, exclusive=True)
    except serial.SerialException as exc:
        text = str(exc)
        if "lock" in text.lower() or "busy" in text.lower():
            held = holders(url)
            who = (
                "; ".join(f"pid {pid}: {cmd[:80]}" for pid, cmd in held)
                if held
                else "a program that did not say"
            )
            raise PortBusy(f"port {url} is busy, held by {who}: close it and try again") from None
        if "rfc2217" in url or "socket" in url:
            raise NoBoard(
                f"nothing answers at {url}: is the board's port server running?"
            ) from None
        raise NoBoard(f"cannot open {url}: {text}") from None
