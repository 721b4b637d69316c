"""The ESP32 ROM bootloader's protocol byte for byte (``hw/esp32_rom.py``), and the image
format the emulated chip boots (``hw/esp_image.py``): pure, no port."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from hw.esp32_rom import (
    ERR_CHECKSUM,
    ERR_INVALID_MESSAGE,
    ESP32_MAGIC,
    SYNC_PAYLOAD,
    RomBootloader,
    SlipDecoder,
    slip_encode,
)
from hw.esp_image import APP_OFFSET, ImageError, micropython_firmware_bin, micropython_version
from hw.spi_flash import SECTOR_SIZE, VFS_OFFSET, SpiFlash

MAC = bytes.fromhex("240ac4a3230e")


def request(op: int, data: bytes, chk: int = 0) -> bytes:
    return struct.pack("<BBHI", 0, op, len(data), chk) + data


def answer(packet: bytes) -> tuple[int, int, bytes, bytes]:
    """(command, value, data, status bytes) of one response packet."""
    direction, op, length, value = struct.unpack_from("<BBHI", packet)
    assert direction == 1
    body = packet[8 : 8 + length]
    return op, value, body[:-4], body[-4:]


@pytest.fixture
def rom(tmp_path: Path) -> RomBootloader:
    return RomBootloader(SpiFlash(tmp_path / "spi_flash.bin"), MAC)


def test_slip_escapes_and_frames() -> None:
    assert slip_encode(b"\x01\xc0\x02\xdb") == b"\xc0\x01\xdb\xdc\x02\xdb\xdd\xc0"
    decoder = SlipDecoder()
    stream = b"noise" + slip_encode(b"\x01\xc0") + slip_encode(b"\xdb")
    assert list(decoder.feed(stream[:7])) == []
    assert list(decoder.feed(stream[7:])) == [b"\x01\xc0", b"\xdb"]


def test_sync_is_answered_eight_times_by_the_rom(rom: RomBootloader) -> None:
    replies = rom.handle(request(0x08, SYNC_PAYLOAD))
    assert len(replies) == 8
    op, value, _, status = answer(replies[0])
    assert (op, status) == (0x08, b"\0\0\0\0")
    assert value != 0  # a flasher stub would answer 0
    assert rom.handle(request(0x08, b"\x07\x07\x12\x21" + b"\x55" * 32)) == []


def test_registers_identify_an_esp32_and_its_mac(rom: RomBootloader) -> None:
    def read(address: int) -> int:
        return answer(rom.handle(request(0x0A, struct.pack("<I", address)))[0])[1]

    assert read(0x40001000) == ESP32_MAGIC
    # esptool's ESP32ROM.read_mac: efuse words 2 and 1, big-endian, without the CRC byte
    assert struct.pack(">II", read(0x3FF5A008), read(0x3FF5A004))[2:] == MAC
    assert (read(0x3FF5A00C) >> 9) & 7 == 1  # package: ESP32-D0WD(-V3)
    assert read(0x3FF40014) == round(40e6 / 115200)  # UART divider of a 40 MHz crystal


def test_flash_begin_data_md5_and_a_bad_checksum_refused(rom: RomBootloader) -> None:
    block = bytes(range(256)) * 4
    begin = struct.pack("<IIII", 0x1000, 1, 0x400, 0x1000)
    assert answer(rom.handle(request(0x02, begin))[0])[3] == b"\0\0\0\0"
    header = struct.pack("<IIII", len(block), 0, 0, 0)
    good = 0xEF
    for b in block:
        good ^= b
    bad = answer(rom.handle(request(0x03, header + block, good ^ 1))[0])
    assert bad[3][:2] == bytes((1, ERR_CHECKSUM))
    assert rom.flash.read(0x1000, 4) == b"\xff" * 4  # nothing written
    assert answer(rom.handle(request(0x03, header + block, good))[0])[3][0] == 0
    md5 = answer(rom.handle(request(0x13, struct.pack("<IIII", 0x1000, 1024, 0, 0)))[0])
    assert md5[2] == hashlib.md5(block).hexdigest().encode()
    assert rom.flash.read(0x1000, 1024) == block


def test_unknown_commands_fail_with_invalid_message(rom: RomBootloader) -> None:
    _, _, _, status = answer(rom.handle(request(0x14, b""))[0])  # GET_SECURITY_INFO
    assert status[:2] == bytes((1, ERR_INVALID_MESSAGE))


def test_the_chip_boots_only_a_valid_micropython_image(tmp_path: Path) -> None:
    flash = SpiFlash(tmp_path / "spi_flash.bin")
    with pytest.raises(ImageError) as blank:
        micropython_version(flash.contents())
    assert blank.value.word == 0xFFFFFFFF  # what the ROM prints: invalid header: 0xffffffff
    image = micropython_firmware_bin("v1.27.0")
    flash.write_image(0x1000, image)
    assert micropython_version(flash.contents()) == "v1.27.0"
    torn = bytearray(image)
    torn[APP_OFFSET - 0x1000 + 40] ^= 0x01  # one bit of the application
    flash.write_image(0x1000, bytes(torn))
    with pytest.raises(ImageError, match="checksum"):
        micropython_version(flash.contents())


def test_erasing_the_vfs_partition_wipes_the_filesystem_and_nothing_else_does(
    tmp_path: Path,
) -> None:
    wiped: list[bool] = []
    flash = SpiFlash(tmp_path / "spi.bin", on_vfs_erased=lambda: wiped.append(True))
    flash.erase(0x1000, 0x10000)  # the bootloader and the app: the files stay
    flash.erase(VFS_OFFSET - SECTOR_SIZE, SECTOR_SIZE)  # up to, not into, the vfs
    assert wiped == []
    flash.erase(VFS_OFFSET - SECTOR_SIZE, 2 * SECTOR_SIZE)  # one sector of it is enough
    assert wiped == [True]
