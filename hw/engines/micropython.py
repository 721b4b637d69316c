"""The MicroPython behaviour both engines emulate, written once.

Where MicroPython on an ESP32 answers something the emulator must answer itself, the answer is
here: the shapes of ``os.stat``, ``os.ilistdir`` and ``os.statvfs`` over a board's flash and
MicroPython's wording of their errors; ``time.ticks_*`` (from power-on, wrapping at 2**30);
``machine``'s reset causes with their codes and the ROM's boot line for each; ``machine.freq()``
and ``machine.unique_id()``; the heap an ESP32 offers, behind ``board.mem()``; ``cryptolib``'s
AES, which the ESP32 port does in its AES hardware (``CryptolibAes``).

The CPython engine uses it directly (its board, and its REPL's ``os``, ``time``, ``machine``);
the MicroPython VM engine's host answers the VM's calls with it (``hw/engines/mpy/host.py``;
its ``cryptolib`` is ``rom/cryptolib.py``, whose AES is done here through the bridge).
So a figure or a code changes here for both engines at once, and they cannot drift apart.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hw.flash import BLOCK_BYTES, Flash

# --- time -----------------------------------------------------------------------------------

TICKS_PERIOD: Final = 1 << 30  # MICROPY_PY_TIME_TICKS_PERIOD: ticks wrap here


class Ticks:
    """``time.ticks_ms()``/``ticks_us()`` of one boot: they count from power-on, as on a chip."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._origin = clock()

    def ticks_ms(self) -> int:
        return int((self._clock() - self._origin) * 1000) % TICKS_PERIOD

    def ticks_us(self) -> int:
        return int((self._clock() - self._origin) * 1_000_000) % TICKS_PERIOD

    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        """``a - b`` across a wrap: signed, in (-TICKS_PERIOD/2, TICKS_PERIOD/2]."""
        half = TICKS_PERIOD // 2
        return ((a - b + half) % TICKS_PERIOD) - half

    @staticmethod
    def ticks_add(t: int, delta: int) -> int:
        return (t + delta) % TICKS_PERIOD


# --- machine --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResetCause:
    """Why a chip (re)started, in each of the words that report it."""

    name: str  # what board.reset_cause() says (firmware/board.py maps the code to it)
    constant: str  # the machine module's name for the code
    code: int  # machine.reset_cause() on the ESP32 port
    rom: bytes  # the rst: reason the ESP32's ROM bootloader prints first


RESET_CAUSES: Final = (
    ResetCause("power_on", "PWRON_RESET", 1, b"0x1 (POWERON_RESET)"),
    ResetCause("hard", "HARD_RESET", 2, b"0x1 (POWERON_RESET)"),
    ResetCause("wdt", "WDT_RESET", 3, b"0x7 (TG0WDT_SYS_RESET)"),
    ResetCause("deepsleep", "DEEPSLEEP_RESET", 4, b"0x5 (DEEPSLEEP_RESET)"),
    ResetCause("soft", "SOFT_RESET", 5, b"0xc (SW_CPU_RESET)"),
)


def reset_cause(name: str) -> ResetCause:
    """The reset cause that ``board.reset_cause()`` calls ``name``."""
    for cause in RESET_CAUSES:
        if cause.name == name:
            return cause
    raise ValueError(f"no reset cause {name!r}: one of {[c.name for c in RESET_CAUSES]}")


CPU_FREQ_HZ: Final = 240_000_000
_ESPRESSIF_OUI: Final = bytes.fromhex("240ac4")


def unique_id(board_id: str) -> bytes:
    """``machine.unique_id()``: a chip's is its 6-byte Wi-Fi MAC; an emulated board's is an
    Espressif MAC derived from its board id, so it is stable and differs between boards."""
    return _ESPRESSIF_OUI + hashlib.sha256(board_id.encode()).digest()[:3]


def machine_facts(board_id: str, cause: str) -> dict[str, Any]:
    """What the REPL's ``machine`` module answers on this boot of this board."""
    return {
        "constants": {c.constant: c.code for c in RESET_CAUSES},
        "reset_cause": reset_cause(cause).code,
        "freq": CPU_FREQ_HZ,
        "unique_id": unique_id(board_id),
    }


# --- heap -----------------------------------------------------------------------------------

# The heap MicroPython firmware can count on on an ESP32 without PSRAM: gc.mem_free() at boot
# shows 100 to 111 KB by release and by what ESP-IDF took first. The lower figure, so that a
# budget that holds here holds on every board.
ESP32_HEAP: Final = 100 * 1024

# About what the firmware holds in normal cycles: its code as .mpy and its run-time heap, as
# hw/firmware_tools/heap.py measures them on the MicroPython VM engine (there the code is
# loaded from .py source, about a third larger). The CPython engine cannot see one board's
# share of its process's heap and reports this, so health reports carry a plausible, steady
# heap on both engines.
FIRMWARE_HEAP_TYPICAL: Final = 64 * 1024


def heap(allocated: int) -> tuple[int, int]:
    """``board.mem()``: (free, allocated) bytes of an ESP32's heap with ``allocated`` in use."""
    return max(0, ESP32_HEAP - allocated), allocated


# --- the filesystem -------------------------------------------------------------------------

S_IFDIR: Final = 0x4000
S_IFREG: Final = 0x8000
# os.statvfs() of the board's 2 MB LittleFS partition: block size, fragment size, blocks,
# free, available, then files, free inodes, available inodes, flags (0 on LittleFS), name max.
STATVFS: Final = (4096, 4096, 512, 256, 256, 0, 0, 0, 0, 255)


def mp_oserror(e: OSError) -> OSError:
    """An OSError as MicroPython words it (``[Errno 2] ENOENT``), so tools recognise it."""
    code = e.errno or errno.EIO
    return OSError(code, errno.errorcode.get(code, "EIO"))


class FlashFilesystem:
    """MicroPython's ``os`` over a board's flash: the calls both REPLs and the VM's mounted
    filesystem reach, with MicroPython's tuples and errors. Paths are absolute board paths."""

    def __init__(self, flash: Flash) -> None:
        self.flash = flash

    def _host(self, path: str) -> str:
        try:
            return str(self.flash.host_path(path))
        except OSError:
            raise OSError(errno.EINVAL, "EINVAL") from None

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as e:
            raise mp_oserror(e) from None

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self._host(path))

    def ilistdir(self, path: str) -> list[tuple[str, int, int, int]]:
        """(name, type, inode, size) per entry, sorted by name; size 0 for a directory."""
        host = self._host(path)
        entries = []
        for name in sorted(self._guard(os.listdir, host)):
            st = os.stat(os.path.join(host, name))
            if stat.S_ISDIR(st.st_mode):
                entries.append((name, S_IFDIR, 0, 0))
            else:
                entries.append((name, S_IFREG, 0, st.st_size))
        return entries

    def stat(self, path: str) -> tuple[int, ...]:
        """(mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime), as MicroPython gives."""
        st = self._guard(os.stat, self._host(path))
        mode = S_IFDIR if stat.S_ISDIR(st.st_mode) else S_IFREG
        t = int(st.st_mtime)
        return (mode, 0, 0, 0, 0, 0, 0 if mode == S_IFDIR else st.st_size, t, t, t)

    def statvfs(self) -> tuple[int, ...]:
        capacity = self.flash.faults.capacity_bytes
        if capacity is None:
            return STATVFS
        blocks = capacity // BLOCK_BYTES
        free = max(0, blocks - self.flash.used_bytes() // BLOCK_BYTES)
        return (BLOCK_BYTES, BLOCK_BYTES, blocks, free, free, *STATVFS[5:])

    def remove(self, path: str) -> None:
        if self.isdir(path):
            raise OSError(errno.EISDIR, "EISDIR")
        self._guard(os.remove, self._host(path))

    def rename(self, old: str, new: str) -> None:
        self._guard(os.replace, self._host(old), self._host(new))

    def mkdir(self, path: str) -> None:
        self._guard(os.mkdir, self._host(path))

    def rmdir(self, path: str) -> None:
        self._guard(os.rmdir, self._host(path))


# --- cryptolib ------------------------------------------------------------------------------

CRYPTOLIB_MODES: Final = {1: "ECB", 2: "CBC"}  # MODE_ECB, MODE_CBC (the port also has CTR: 6)


class CryptolibAes:
    """``cryptolib.aes(key, mode[, IV])`` as the ESP32 port offers it, ECB and CBC: whole
    16-byte blocks only, one direction per object (encrypt or decrypt, whichever comes
    first), CBC chaining on from one call to the next, ``out_buf`` filled in place."""

    def __init__(self, key: bytes, mode: int, IV: bytes | None = None) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("key")
        if mode not in CRYPTOLIB_MODES:
            raise ValueError("mode")
        self._key = bytes(key)
        self._mode = mode
        self._iv = bytes(IV) if IV is not None else bytes(16)
        if len(self._iv) != 16:
            raise ValueError("IV")
        self._direction: str | None = None

    def encrypt(self, in_buf: bytes, out_buf: bytearray | None = None) -> Any:
        return self._run("encrypt", in_buf, out_buf)

    def decrypt(self, in_buf: bytes, out_buf: bytearray | None = None) -> Any:
        return self._run("decrypt", in_buf, out_buf)

    def _run(self, direction: str, data: bytes, out: bytearray | None) -> Any:
        if self._direction not in (None, direction):
            raise ValueError("can't encrypt & decrypt")
        self._direction = direction
        data = bytes(data)
        if len(data) % 16:
            raise ValueError("blksize % 16")
        if out is not None and len(out) < len(data):
            raise ValueError("output too small")
        mode = modes.ECB() if self._mode == 1 else modes.CBC(self._iv)
        cipher = Cipher(algorithms.AES(self._key), mode)
        ctx = cipher.encryptor() if direction == "encrypt" else cipher.decryptor()
        result = ctx.update(data) + ctx.finalize()
        if self._mode == 2 and data:
            self._iv = (result if direction == "encrypt" else data)[-16:]
        if out is None:
            return result
        out[: len(result)] = result
        return out


def cryptolib_aes(key: bytes, mode: int, encrypt: bool, iv: bytes, data: bytes) -> bytes:
    """One call of the VM engine's ``cryptolib`` (its object keeps the CBC chaining)."""
    aes = CryptolibAes(key, mode, iv)
    return bytes(aes.encrypt(data) if encrypt else aes.decrypt(data))


def cryptolib_module() -> ModuleType:
    """The CPython engine's ``cryptolib``, for ``import cryptolib`` in the firmware."""
    module = ModuleType("cryptolib", "MicroPython's cryptolib (AES), emulated on the host.")
    module.aes = CryptolibAes  # type: ignore[attr-defined]
    module.MODE_ECB = 1  # type: ignore[attr-defined]
    module.MODE_CBC = 2  # type: ignore[attr-defined]
    return module
