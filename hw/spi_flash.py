"""An emulated ESP32's SPI NOR flash chip: its whole contents as one file in the board's
state directory, the size of the chip (4 MiB).

This is the flash the ROM bootloader reads and esptool writes (MicroPython itself lives
in it); the MicroPython filesystem the firmware sees is the board's flash directory
(``hw/flash.py``), which the chip's ``vfs`` partition stands for. As NOR flash, an erased
byte reads 0xFF and a write can only clear bits (the stored byte is old AND new), so a write
over an unerased region corrupts it as on a chip. A new chip is erased throughout. Erasing
any part of the ``vfs`` partition wipes that filesystem (``on_vfs_erased``), as erasing the
sectors holding LittleFS does: MicroPython then formats it afresh at its next boot.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

FLASH_SIZE: Final = 4 * 1024 * 1024
SECTOR_SIZE: Final = 0x1000
#: MicroPython's ``vfs`` partition on a 4 MB ESP32 (its partition table: hw/esp_image.py).
VFS_OFFSET: Final = 0x200000
VFS_SIZE: Final = 0x200000
# JEDEC id a 4 MB Winbond W25Q32 answers to RDID (0x9F), as the ROM reads it (LSB first).
FLASH_JEDEC_ID: Final = 0x1640EF


class SpiFlash:
    """The chip's flash as a file; every operation goes to the file at once."""

    def __init__(
        self,
        path: Path,
        size: int = FLASH_SIZE,
        on_vfs_erased: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.size = size
        self.on_vfs_erased = on_vfs_erased
        if not path.exists() or path.stat().st_size != size:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(b"\xff" * size)
            tmp.replace(path)

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def erase(self, offset: int, length: int) -> None:
        """Erase every sector the range touches (the sector is the unit of erase)."""
        start = offset - offset % SECTOR_SIZE
        end = min(self.size, -(-(offset + length) // SECTOR_SIZE) * SECTOR_SIZE)
        self._check(start, end - start)
        self._write_raw(start, b"\xff" * (end - start))
        if self.on_vfs_erased is not None and start < VFS_OFFSET + VFS_SIZE and end > VFS_OFFSET:
            self.on_vfs_erased()

    def program(self, offset: int, data: bytes) -> None:
        """Write ``data`` as NOR flash does: bits only go from 1 to 0."""
        old = self.read(offset, len(data))
        merged = (int.from_bytes(old, "little") & int.from_bytes(data, "little")).to_bytes(
            len(data), "little"
        )
        self._write_raw(offset, merged)

    def write_image(self, offset: int, data: bytes) -> None:
        """Erase and write, as esptool does: for tests that start from a flashed board."""
        self.erase(offset, len(data))
        self.program(offset, data)

    def md5(self, offset: int, length: int) -> str:
        return hashlib.md5(self.read(offset, length)).hexdigest()

    def contents(self) -> bytes:
        return self.path.read_bytes()

    def _write_raw(self, offset: int, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"flash range {offset:#x}+{length:#x} outside {self.size:#x} bytes")
