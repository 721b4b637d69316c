"""The ESP32 application image format, and how an emulated chip knows MicroPython is flashed.

Pure functions between bytes and plain objects (no files, no clock). An image is what
``esptool`` writes and what the ROM loads (``esptool/bin_image.py``'s ESP32 image): an 8-byte
header (magic ``0xE9``, segment count, SPI mode, size/frequency, entry point), a 16-byte
extended header (chip id 0 for the ESP32, chip revisions, whether a SHA-256 is appended),
the segments (load address, length, data), padding to 16 bytes less one, and a checksum
byte: ``0xEF`` XOR every byte of segment data.

What the emulated ESP32 boots (``booted_micropython``), as a real one does from its flash:

- the second-stage bootloader at 0x1000 must be a valid ESP32 image (magic, segments
  within the flash, checksum), else the ROM prints ``invalid header: 0x…`` and resets, in a
  loop, as a blank chip does;
- the application at 0x10000 (the ``factory`` partition of MicroPython's layout) must be a
  valid image whose segments hold MicroPython's banner, ``MicroPython v…`` up to the
  ``;``: that banner's version is the one the board then reports.

``micropython_firmware_bin()`` builds such a ``firmware.bin`` (to write at 0x1000, as
MicroPython's ESP32 downloads are): small, and accepted both by this emulator and by esptool's
own image checks.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final

IMAGE_MAGIC: Final = 0xE9
CHECKSUM_SEED: Final = 0xEF
ESP32_CHIP_ID: Final = 0
BOOTLOADER_OFFSET: Final = 0x1000  # where the ESP32 ROM loads the second stage from
PARTITION_TABLE_OFFSET: Final = 0x8000
APP_OFFSET: Final = 0x10000  # MicroPython's factory app partition
_HEADER: Final = struct.Struct("<BBBBI")
_EXTENDED: Final = struct.Struct("<BBBBHBHH4sB")
_SEGMENT: Final = struct.Struct("<II")
_MAX_SEGMENTS: Final = 16
_BANNER: Final = re.compile(rb"MicroPython (v[0-9][0-9A-Za-z.\-+]*)[^;\x00]*;")


class ImageError(ValueError):
    """Bytes that are not a loadable ESP32 image; ``word`` is what the ROM reports."""

    def __init__(self, message: str, word: int) -> None:
        super().__init__(message)
        self.word = word


@dataclass(frozen=True)
class Segment:
    load_address: int
    data: bytes


@dataclass(frozen=True)
class EspImage:
    """A parsed ESP32 image; ``size`` counts every byte up to the checksum (and hash)."""

    entry: int
    flash_mode: int
    flash_size_freq: int
    chip_id: int
    segments: tuple[Segment, ...]
    size: int


def checksum(data: bytes, state: int = CHECKSUM_SEED) -> int:
    """The ROM's checksum: XOR of every byte, from ``0xEF`` (esptool's ``ESPLoader.checksum``)."""
    for b in data:
        state ^= b
    return state


def parse_image(data: bytes) -> EspImage:
    """Parse an ESP32 image at the start of ``data``; raise :class:`ImageError` if the ROM
    would refuse it."""
    if len(data) < _HEADER.size + _EXTENDED.size:
        raise ImageError("image truncated in its header", _first_word(data))
    magic, count, mode, size_freq, entry = _HEADER.unpack_from(data)
    if magic != IMAGE_MAGIC:
        raise ImageError(f"invalid magic byte {magic:#04x}", _first_word(data))
    if not 1 <= count <= _MAX_SEGMENTS:
        raise ImageError(f"{count} segments", _first_word(data))
    extended = _EXTENDED.unpack_from(data, _HEADER.size)
    chip_id, hash_appended = extended[4], extended[9]
    at = _HEADER.size + _EXTENDED.size
    segments = []
    state = CHECKSUM_SEED
    for _ in range(count):
        if at + _SEGMENT.size > len(data):
            raise ImageError("image truncated in a segment header", _first_word(data))
        address, length = _SEGMENT.unpack_from(data, at)
        at += _SEGMENT.size
        if at + length > len(data):
            raise ImageError("a segment runs past the flash", _first_word(data))
        body = data[at : at + length]
        state = checksum(body, state)
        segments.append(Segment(address, body))
        at += length
    at += 15 - at % 16  # padding, the checksum byte ends a 16-byte block
    if at >= len(data) or data[at] != state:
        raise ImageError("checksum mismatch", _first_word(data))
    at += 1 + (32 if hash_appended == 1 else 0)
    return EspImage(entry, mode, size_freq, chip_id, tuple(segments), at)


def build_image(segments: list[Segment], entry: int, *, flash_size_freq: int = 0x20) -> bytes:
    """An ESP32 image of these segments (DIO mode, 4 MB and 40 MHz unless told), no hash."""
    out = bytearray(_HEADER.pack(IMAGE_MAGIC, len(segments), 2, flash_size_freq, entry))
    # wp pin unused (0xEE), drive strengths 0, ESP32, revisions v0.0 to v3.99
    out += _EXTENDED.pack(0xEE, 0, 0, 0, ESP32_CHIP_ID, 0, 0, 399, b"\0" * 4, 0)
    state = CHECKSUM_SEED
    for segment in segments:
        body = segment.data + b"\0" * (-len(segment.data) % 4)
        out += _SEGMENT.pack(segment.load_address, len(body)) + body
        state = checksum(body, state)
    out += b"\0" * (15 - len(out) % 16)
    out.append(state)
    return bytes(out)


def micropython_version(flash: bytes) -> str:
    """The MicroPython version a chip with this flash boots (``v1.27.0``); raise
    :class:`ImageError` (with the word the ROM prints) when it would not boot it."""
    parse_image(flash[BOOTLOADER_OFFSET:APP_OFFSET])
    app = parse_image(flash[APP_OFFSET:])
    for segment in app.segments:
        found = _BANNER.search(segment.data)
        if found:
            return found.group(1).decode()
    raise ImageError("the application is not MicroPython", _first_word(flash[APP_OFFSET:]))


def micropython_firmware_bin(version: str = "v1.27.0") -> bytes:
    """A small stand-in for MicroPython's ESP32 ``firmware.bin`` (write it at 0x1000): a
    second-stage bootloader, a partition table at 0x8000 and the application at 0x10000
    carrying MicroPython's banner."""
    bootloader = build_image(
        [Segment(0x3FFF0030, b"second stage bootloader" * 8), Segment(0x40078000, b"\x36" * 64)],
        entry=0x40080400,
    )
    banner = f"MicroPython {version} on 2025-12-10; Generic ESP32 module with ESP32\0".encode()
    app = build_image(
        [Segment(0x3F400020, banner + b"\0" * 200), Segment(0x400D0020, b"\x36\x41" * 512)],
        entry=0x40082000,
    )
    partitions = _partition_table()
    image = bytearray(b"\xff" * (APP_OFFSET - BOOTLOADER_OFFSET))
    image[: len(bootloader)] = bootloader
    at = PARTITION_TABLE_OFFSET - BOOTLOADER_OFFSET
    image[at : at + len(partitions)] = partitions
    return bytes(image) + app


def _partition_table() -> bytes:
    """MicroPython's ESP32 partitions (nvs, phy_init, factory app, vfs), as esp-idf packs them."""
    entries = [
        (b"nvs", 1, 2, 0x9000, 0x6000),
        (b"phy_init", 1, 1, 0xF000, 0x1000),
        (b"factory", 0, 0, APP_OFFSET, 0x1F0000),
        (b"vfs", 1, 0x81, 0x200000, 0x200000),
    ]
    out = b"".join(
        struct.pack("<2sBBII16sI", b"\xaa\x50", kind, sub, offset, size, name, 0)
        for name, kind, sub, offset, size in entries
    )
    return out + b"\xff" * 32


def _first_word(data: bytes) -> int:
    """What the ROM prints after ``invalid header:``, the first word it read."""
    return int.from_bytes(data[:4].ljust(4, b"\xff"), "little")
