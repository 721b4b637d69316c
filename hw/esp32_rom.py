"""The ESP32's ROM serial bootloader (download mode), as esptool speaks to it with --no-stub.

Pure: bytes in, bytes out, over an :class:`~hw.spi_flash.SpiFlash`; no port, no clock. The
protocol, after esptool's ``loader.py`` and ``targets/esp32.py``:

- SLIP framing (``0xC0`` ends a frame, ``0xDB 0xDC``/``0xDB 0xDD`` escape ``0xC0``/``0xDB``);
- a request is ``<BBHI``: direction 0, command, data length, checksum; then the data;
- a response is ``<BBHI``: direction 1, the same command, data length, a value; then the
  data, which for the ESP32 ROM ends in four status bytes: status (0 ok, 1 failed), error
  code, two reserved;
- SYNC is answered eight times; READ_REG/WRITE_REG reach a register file holding what
  esptool reads to identify an ESP32 (the chip-detect magic at 0x40001000, the efuse words
  with the MAC, package and revision, the UART divider, the RTC calibration) and the SPI
  controller, whose user commands answer RDID and SFDP like a 4 MB Winbond flash;
- FLASH_BEGIN erases, FLASH_DATA writes a block if its checksum (``0xEF`` XOR the data)
  and sequence number are right, FLASH_END leaves (to reboot or to run the flash's code),
  SPI_FLASH_MD5 answers the MD5 of a region as 32 lowercase hex digits, READ_FLASH_SLOW
  reads 64 bytes; SPI_SET_PARAMS, SPI_ATTACH and CHANGE_BAUDRATE are acknowledged; any
  other command (GET_SECURITY_INFO, the deflate and RAM ones) fails with error 0x05, as the
  ESP32's ROM answers what it does not know.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from hw.esp_image import checksum
from hw.spi_flash import FLASH_JEDEC_ID, SpiFlash

SLIP_END: Final = 0xC0
SLIP_ESC: Final = 0xDB

FLASH_BEGIN: Final = 0x02
FLASH_DATA: Final = 0x03
FLASH_END: Final = 0x04
SYNC: Final = 0x08
WRITE_REG: Final = 0x09
READ_REG: Final = 0x0A
SPI_SET_PARAMS: Final = 0x0B
SPI_ATTACH: Final = 0x0D
READ_FLASH_SLOW: Final = 0x0E
CHANGE_BAUDRATE: Final = 0x0F
SPI_FLASH_MD5: Final = 0x13

# Error codes in the second status byte (esptool's util.py names them 0x1xx).
ERR_INVALID_MESSAGE: Final = 0x05
ERR_FAILED: Final = 0x06
ERR_CHECKSUM: Final = 0x07
ERR_FLASH_WRITE: Final = 0x08
ERR_FLASH_READ: Final = 0x09

SYNC_PAYLOAD: Final = b"\x07\x07\x12\x20" + b"\x55" * 32
SYNC_VALUE: Final = 0x20120707  # non-zero: the ROM, not a flasher stub, answers

CHIP_DETECT_MAGIC_REG: Final = 0x40001000
ESP32_MAGIC: Final = 0x00F01D83
EFUSE_BASE: Final = 0x3FF5A000
UART_CLKDIV_REG: Final = 0x3FF40014
APB_CTL_DATE_REG: Final = 0x3FF6607C
RTCCALICFG1: Final = 0x3FF5F06C
GPIO_STRAP_REG: Final = 0x3FF44038
SPI_BASE: Final = 0x3FF42000
SPI_CMD_REG: Final = SPI_BASE + 0x00
SPI_ADDR_REG: Final = SPI_BASE + 0x04
SPI_USR2_REG: Final = SPI_BASE + 0x24
SPI_W0_REG: Final = SPI_BASE + 0x80
SPI_CMD_USR: Final = 1 << 18
APB_HZ: Final = 40_000_000  # a 40 MHz crystal; the ROM runs the APB bus from it
BOOT_MODE_DOWNLOAD: Final = 0x03  # GPIO_STRAP: IO0 low, UART download
SFDP_SIGNATURE: Final = 0x50444653  # "SFDP"


def slip_encode(packet: bytes) -> bytes:
    body = packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


class SlipDecoder:
    """Frames out of a byte stream; bytes outside a frame (a terminal's noise) are skipped."""

    def __init__(self) -> None:
        self._frame: bytearray | None = None
        self._escaped = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        for b in data:
            if self._frame is None:
                if b == SLIP_END:
                    self._frame = bytearray()
                continue
            if self._escaped:
                self._escaped = False
                self._frame.append({0xDC: 0xC0, 0xDD: 0xDB}.get(b, b))
            elif b == SLIP_ESC:
                self._escaped = True
            elif b == SLIP_END:
                if self._frame:
                    yield bytes(self._frame)
                    self._frame = None
                # two END bytes in a row: the second starts the next frame
                else:
                    self._frame = bytearray()
            else:
                self._frame.append(b)


def esp32_efuses(mac: bytes) -> dict[int, int]:
    """The efuse words esptool reads from an ESP32-D0WD-V3 revision v3.1 with this MAC:
    package 1, revision bits (word 3 bit 15, word 5 bit 20, APB date bit 31), rated 240 MHz,
    the CK8M calibration, and the MAC with its CRC in words 1 and 2."""
    words = {n: 0 for n in range(7)}
    words[1] = int.from_bytes(mac[2:6], "big")
    words[2] = (_mac_crc8(mac) << 16) | int.from_bytes(mac[0:2], "big")
    words[3] = (1 << 15) | (1 << 13) | (1 << 9)
    words[4] = 100  # EFUSE_RD_CK8M_FREQ: with the calibration below, a 40 MHz crystal
    words[5] = (1 << 24) | (1 << 20)
    return {EFUSE_BASE + 4 * n: value for n, value in words.items()}


def _mac_crc8(mac: bytes) -> int:
    """The CRC-8 (Dallas/Maxim, reflected 0x8C) the ESP32 keeps beside its factory MAC."""
    crc = 0
    for b in mac:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


@dataclass
class FlashWrite:
    """A FLASH_BEGIN in progress."""

    offset: int
    blocks: int
    block_size: int
    next_seq: int = 0


@dataclass
class RomState:
    """What the ROM holds between commands; ``exit`` tells the chip to leave download mode:
    ``"reboot"`` or ``"run"`` (the flash's code)."""

    baudrate: int = 115200
    registers: dict[int, int] = field(default_factory=dict)
    write: FlashWrite | None = None
    exit: str | None = None


class RomBootloader:
    """One download-mode session of the chip (it lasts until the next reset)."""

    def __init__(self, flash: SpiFlash, mac: bytes, baudrate: int = 115200) -> None:
        self.flash = flash
        self.state = RomState(baudrate=baudrate)
        self.state.registers.update(esp32_efuses(mac))
        self.state.registers.update(
            {
                CHIP_DETECT_MAGIC_REG: ESP32_MAGIC,
                APB_CTL_DATE_REG: (1 << 31) | 0x16042000,
                RTCCALICFG1: 1024 << 7,  # 1024 * 15625 * CK8M 100 / 40 = 40 MHz
                GPIO_STRAP_REG: BOOT_MODE_DOWNLOAD,
            }
        )
        self._decoder = SlipDecoder()

    def receive(self, data: bytes) -> bytes:
        """Bytes from the port in, the SLIP-framed answers to send back out."""
        out = bytearray()
        for frame in self._decoder.feed(data):
            for response in self.handle(frame):
                out += slip_encode(response)
        return bytes(out)

    def handle(self, frame: bytes) -> list[bytes]:
        """One request frame (unescaped) in; the response packets out (none, one, or SYNC's
        eight)."""
        if len(frame) < 8 or frame[0] != 0:
            return []  # not a request: the ROM stays silent
        _, op, length, chk = struct.unpack_from("<BBHI", frame)
        data = frame[8:]
        if len(data) != length:
            return [_response(op, 0, b"", ERR_INVALID_MESSAGE)]
        if op == SYNC:
            if data != SYNC_PAYLOAD:
                return []
            return [_response(SYNC, SYNC_VALUE, b"")] * 8
        handler = _HANDLERS.get(op)
        if handler is None:
            return [_response(op, 0, b"", ERR_INVALID_MESSAGE)]
        try:
            return [handler(self, data, chk)]
        except (struct.error, ValueError):
            return [_response(op, 0, b"", ERR_INVALID_MESSAGE)]

    # --- registers ------------------------------------------------------------------------

    def read_register(self, address: int) -> int:
        if address == UART_CLKDIV_REG:
            return round(APB_HZ / self.state.baudrate) & 0xFFFFF
        return self.state.registers.get(address, 0)

    def _write_register(self, address: int, value: int, mask: int) -> None:
        old = self.state.registers.get(address, 0)
        self.state.registers[address] = (old & ~mask) | (value & mask)
        if address == SPI_CMD_REG and value & SPI_CMD_USR:
            self._spi_user_command()

    def _spi_user_command(self) -> None:
        """What the SPI controller's user command does on the flash, then clears its bit."""
        regs = self.state.registers
        command = regs.get(SPI_USR2_REG, 0) & 0xFF
        if command == 0x9F:  # RDID
            regs[SPI_W0_REG] = FLASH_JEDEC_ID
        elif command == 0x5A:  # RDSFDP, 24-bit address sent MSB first
            address = regs.get(SPI_ADDR_REG, 0) >> 8
            regs[SPI_W0_REG] = SFDP_SIGNATURE if address == 0 else 0
        elif command in (0x05, 0x35, 0x15):  # read status registers: idle, unprotected
            regs[SPI_W0_REG] = 0
        regs[SPI_CMD_REG] = regs.get(SPI_CMD_REG, 0) & ~SPI_CMD_USR

    # --- commands -------------------------------------------------------------------------

    def _read_reg(self, data: bytes, chk: int) -> bytes:
        (address,) = struct.unpack("<I", data)
        return _response(READ_REG, self.read_register(address), b"")

    def _write_reg(self, data: bytes, chk: int) -> bytes:
        if not data or len(data) % 16:
            raise ValueError("WRITE_REG takes 16-byte groups")
        for at in range(0, len(data), 16):
            address, value, mask, _delay_us = struct.unpack_from("<IIII", data, at)
            self._write_register(address, value, mask)
        return _response(WRITE_REG, 0, b"")

    def _spi_set_params(self, data: bytes, chk: int) -> bytes:
        _fl_id, total_size, _block, _sector, _page, _status_mask = struct.unpack("<6I", data)
        if total_size > self.flash.size:
            return _response(SPI_SET_PARAMS, 0, b"", ERR_FAILED)
        return _response(SPI_SET_PARAMS, 0, b"")

    def _spi_attach(self, data: bytes, chk: int) -> bytes:
        struct.unpack("<II", data)
        return _response(SPI_ATTACH, 0, b"")

    def _flash_begin(self, data: bytes, chk: int) -> bytes:
        erase_size, blocks, block_size, offset = struct.unpack("<IIII", data)
        if offset + erase_size > self.flash.size or block_size == 0:
            return _response(FLASH_BEGIN, 0, b"", ERR_FAILED)
        if erase_size:
            self.flash.erase(offset, erase_size)
        self.state.write = FlashWrite(offset, blocks, block_size)
        return _response(FLASH_BEGIN, 0, b"")

    def _flash_data(self, data: bytes, chk: int) -> bytes:
        size, seq, _, _ = struct.unpack_from("<IIII", data)
        block = data[16:]
        write = self.state.write
        if write is None or len(block) != size or size > write.block_size:
            return _response(FLASH_DATA, 0, b"", ERR_INVALID_MESSAGE)
        if checksum(block) != chk & 0xFF:
            return _response(FLASH_DATA, 0, b"", ERR_CHECKSUM)
        if seq != write.next_seq:
            return _response(FLASH_DATA, 0, b"", ERR_INVALID_MESSAGE)
        offset = write.offset + seq * write.block_size
        if offset + size > self.flash.size:
            return _response(FLASH_DATA, 0, b"", ERR_FLASH_WRITE)
        self.flash.program(offset, block)
        write.next_seq += 1
        return _response(FLASH_DATA, 0, b"")

    def _flash_end(self, data: bytes, chk: int) -> bytes:
        (stay_running,) = struct.unpack("<I", data)
        self.state.write = None
        self.state.exit = "run" if stay_running else "reboot"
        return _response(FLASH_END, 0, b"")

    def _flash_md5(self, data: bytes, chk: int) -> bytes:
        address, size, _, _ = struct.unpack("<IIII", data)
        if address + size > self.flash.size:
            return _response(SPI_FLASH_MD5, 0, b"", ERR_FLASH_READ)
        return _response(SPI_FLASH_MD5, 0, self.flash.md5(address, size).encode())

    def _read_flash_slow(self, data: bytes, chk: int) -> bytes:
        address, length = struct.unpack("<II", data)
        if length > 64 or address + length > self.flash.size:
            return _response(READ_FLASH_SLOW, 0, b"", ERR_FLASH_READ)
        return _response(READ_FLASH_SLOW, 0, self.flash.read(address, length).ljust(64, b"\0"))

    def _change_baudrate(self, data: bytes, chk: int) -> bytes:
        baud, _old = struct.unpack("<II", data)
        if baud == 0:
            return _response(CHANGE_BAUDRATE, 0, b"", ERR_INVALID_MESSAGE)
        self.state.baudrate = baud
        return _response(CHANGE_BAUDRATE, 0, b"")


def _response(op: int, value: int, data: bytes, error: int = 0) -> bytes:
    status = bytes((1 if error else 0, error, 0, 0))
    return struct.pack("<BBHI", 1, op, len(data) + 4, value) + data + status


_HANDLERS = {
    READ_REG: RomBootloader._read_reg,
    WRITE_REG: RomBootloader._write_reg,
    SPI_SET_PARAMS: RomBootloader._spi_set_params,
    SPI_ATTACH: RomBootloader._spi_attach,
    FLASH_BEGIN: RomBootloader._flash_begin,
    FLASH_DATA: RomBootloader._flash_data,
    FLASH_END: RomBootloader._flash_end,
    SPI_FLASH_MD5: RomBootloader._flash_md5,
    READ_FLASH_SLOW: RomBootloader._read_flash_slow,
    CHANGE_BAUDRATE: RomBootloader._change_baudrate,
}
