"""An emulated board's flash: a host directory, with a power cut on demand.

Board paths are absolute (``/data/buf/00000001.seg``) and map below the board's own
directory, which persists across the board's resets. ``FlashFaults.cut_at_write = N`` makes
the Nth write (counted from the board's power-on) tear: only the first half of its bytes
reach the file, and then the power goes, either as a :class:`PowerCut` raised into the
firmware (the engine restarts the board) or by SIGKILL of the whole process.
``cut_at_life_write = N`` does the same at the Nth write of the board's life, over every
boot (``life_writes`` counts them), for faults in a step that spans a reboot.
``cut_at_path = "/oscore.json.new"`` tears the first write to that file instead, or with
``cut_after_path = N`` the Nth write after it, for a fault at a step whose write number is
not known beforehand (a key written when the gateway hands it over).
``capacity_bytes = N`` makes the flash that small (a nearly full board): ``os.statvfs``
reports what its files leave free, in 4 kB blocks as LittleFS counts them, and a write that
does not fit fails with ENOSPC, as the board's filesystem does.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal


class PowerCut(BaseException):
    """The emulated board lost power in the middle of a flash write."""


@dataclass
class FlashFaults:
    cut_at_write: int | None = None
    cut_at_life_write: int | None = None
    cut_by: Literal["reset", "kill"] = "reset"
    life_writes: int = 0
    cut_at_path: str | None = None
    cut_after_path: int = 0
    #: The filesystem's size (``None``: the board's 2 MB partition, never full).
    capacity_bytes: int | None = None


#: LittleFS's block on the ESP32's flash.
BLOCK_BYTES = 4096


class _File:
    """A file on the emulated flash; counts its writes for power-cut injection."""

    def __init__(self, flash: Flash, raw: IO[Any], path: Path) -> None:
        self._flash = flash
        self._raw = raw
        self._path = path

    def write(self, data: bytes | str) -> int:
        self._flash.writes += 1
        faults = self._flash.faults
        faults.life_writes += 1
        cut_at = faults.cut_at_path
        if cut_at is not None and self._path == self._flash.host_path(cut_at):
            faults.cut_at_path = None
            faults.cut_at_write = self._flash.writes + faults.cut_after_path
        if (faults.cut_at_write is not None and self._flash.writes >= faults.cut_at_write) or (
            faults.cut_at_life_write is not None and faults.life_writes >= faults.cut_at_life_write
        ):
            faults.cut_at_write = faults.cut_at_life_write = None
            self._raw.write(data[: len(data) // 2])
            self._raw.flush()
            os.fsync(self._raw.fileno())
            if faults.cut_by == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise PowerCut(f"power cut during flash write {self._flash.writes}")
        if faults.capacity_bytes is not None:
            free = faults.capacity_bytes - self._flash.used_bytes()
            if len(data) > free:
                raise OSError(errno.ENOSPC, "ENOSPC")
        return self._raw.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()


class Flash:
    """The flash interface of firmware/board.py over a host directory."""

    def __init__(self, root: Path, faults: FlashFaults | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.faults = faults or FlashFaults()
        self.writes = 0

    def host_path(self, path: str) -> Path:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise OSError(f"path escapes the flash: {path}")
        return self.root.joinpath(*parts)

    def open(self, path: str, mode: str) -> _File:
        host = self.host_path(path)
        try:
            raw = open(host, mode)  # noqa: SIM115 - handed to the firmware
        except FileNotFoundError as e:
            raise OSError(2, f"ENOENT {path}") from e
        return _File(self, raw, host)

    def remove(self, path: str) -> None:
        os.remove(self.host_path(path))

    def rename(self, old: str, new: str) -> None:
        os.replace(self.host_path(old), self.host_path(new))

    def size(self, path: str) -> int:
        try:
            return self.host_path(path).stat().st_size
        except OSError:
            return -1

    def used_bytes(self) -> int:
        """What the files and directories take, in whole blocks (as LittleFS allocates)."""
        used = BLOCK_BYTES  # the root directory
        for path in self.root.rglob("*"):
            if path.is_dir():
                used += BLOCK_BYTES
            elif path.is_file():
                used += -(-path.stat().st_size // BLOCK_BYTES) * BLOCK_BYTES
        return used

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.host_path(path)))

    def mkdir(self, path: str) -> None:
        self.host_path(path).mkdir(exist_ok=True)
