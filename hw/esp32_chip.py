"""What an emulated ESP32 does from EN going high until MicroPython runs: the ROM's part.

At every reset (EN low, then high; or power-on) the chip samples IO0 once EN has risen, after
``STRAP_SAMPLE_DELAY_S``: the RC delay of the capacitor on a dev board's EN line. It is why
esptool's DTR/RTS sequence, which passes through "both high" on its way to "IO0 low", still
lands in download mode. Over RFC 2217 each line change waits for the server's answer, which
pyserial's client polls every 50 ms, so the emulated board has the larger EN capacitor
(10 uF) that boards are given to make auto-reset reliable: 0.1 s.

- IO0 low: **download mode**. The ROM prints ``boot:0x3 (DOWNLOAD_BOOT…)`` and ``waiting for
  download`` and serves its serial bootloader (``hw/esp32_rom.py``) on the port until the
  next reset, or until FLASH_END tells it to reboot or run the flash's code;
- IO0 high: it boots from flash. If the flash holds MicroPython (``hw/esp_image.py``), the
  board runner boots it; else the ROM prints ``invalid header: 0x…`` lines and resets by its
  RTC watchdog, again and again, as a blank ESP32 does, until EN is pulled low.

EN held low keeps the chip in reset: nothing runs and the port is silent.
"""

from __future__ import annotations

import asyncio
from typing import Final

from hw.engines.micropython import reset_cause
from hw.esp32_rom import RomBootloader
from hw.esp_image import ImageError, micropython_version
from hw.spi_flash import SpiFlash
from hw.uart import Uart

STRAP_SAMPLE_DELAY_S: Final = 0.1
INVALID_HEADER_LOOP_S: Final = 1.0  # a blank chip's watchdog resets, in the emulator's time
_ROM_BANNER: Final = b"ets Jul 29 2019 12:21:46\r\n\r\n"
_DOWNLOAD_BOOT: Final = b"boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\n"
_FLASH_BOOT: Final = b"boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"


class Esp32Chip:
    """EN, IO0 and the SPI flash of one emulated ESP32, and its ROM."""

    def __init__(self, uart: Uart, flash: SpiFlash, mac: bytes) -> None:
        self.uart = uart
        self.flash = flash
        self.mac = mac
        self.en = True
        self.io0 = True
        self.mode = "off"  # off | reset | download | invalid_header | flash_boot
        self.rom: RomBootloader | None = None  # the download session, while one runs
        self._changed = asyncio.Event()
        self._resets = 0  # EN falling edges so far
        self._on_reset: list[asyncio.Event] = []

    # --- the pins ---------------------------------------------------------------------------

    def set_pins(self, en: bool, io0: bool) -> None:
        """The levels the auto-reset circuit (or a technician's buttons) put on EN and IO0."""
        if self.en and not en:
            self._resets += 1
            for event in self._on_reset:
                event.set()
        self.en, self.io0 = en, io0
        self._changed.set()

    async def press_en(self, *, hold_boot: bool = False, hold_s: float = 0.1) -> None:
        """A technician presses EN (holding BOOT, IO0, meanwhile if ``hold_boot``)."""
        self.set_pins(False, not hold_boot)
        await asyncio.sleep(hold_s)
        self.set_pins(True, not hold_boot)
        await asyncio.sleep(STRAP_SAMPLE_DELAY_S * 3)
        self.set_pins(True, True)

    def reset_event(self) -> asyncio.Event:
        """An event set at the next EN falling edge (the board runner stops on it)."""
        event = asyncio.Event()
        self._on_reset.append(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        if event in self._on_reset:
            self._on_reset.remove(event)

    # --- from reset to MicroPython ----------------------------------------------------------

    async def boot_rom(self, cause: str) -> str:
        """Run the ROM from this reset until the flash's MicroPython boots; return the cause
        MicroPython will report."""
        rst = _rst(cause)
        while True:
            self.mode = "reset"
            while not self.en:
                self._changed.clear()
                await self._changed.wait()
            resets = self._resets
            await asyncio.sleep(STRAP_SAMPLE_DELAY_S)
            if self._resets != resets or not self.en:
                cause, rst = "power_on", _rst("power_on")
                continue
            if not self.io0:
                exit_to = await self._download_mode(rst)
                if exit_to is None:  # EN pulled low
                    cause, rst = "power_on", _rst("power_on")
                    continue
                if exit_to == "reboot":
                    cause, rst = "soft", _rst("soft")
                    continue
                # "run": the ROM jumps to the flash's code without a reset
            else:
                self.uart.write(_ROM_BANNER + b"rst:" + rst + b"," + _FLASH_BOOT, droppable=True)
            try:
                micropython_version(self.flash.contents())
            except ImageError as bad:
                await self._invalid_header(bad.word)
                cause, rst = "power_on", _rst("power_on")
                continue
            self.mode = "flash_boot"
            return cause

    async def _download_mode(self, rst: bytes) -> str | None:
        """Serve the ROM bootloader until a reset (None) or FLASH_END's exit."""
        self.mode = "download"
        self.uart.write(
            _ROM_BANNER + b"rst:" + rst + b"," + _DOWNLOAD_BOOT + b"waiting for download\r\n"
        )
        rom = self.rom = RomBootloader(self.flash, self.mac)
        exited = asyncio.Event()
        reset = self.reset_event()

        def received(data: bytes) -> None:
            answer = rom.receive(data)
            if answer:
                self.uart.write(answer)
            if rom.state.exit is not None:
                exited.set()

        before = self.uart.listen(received)
        try:
            waits = {asyncio.ensure_future(exited.wait()), asyncio.ensure_future(reset.wait())}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            return None if reset.is_set() else rom.state.exit
        finally:
            self.uart.listen(before)
            self.forget(reset)
            self.rom = None

    async def _invalid_header(self, word: int) -> None:
        """A chip with nothing bootable: header errors and watchdog resets until EN goes low."""
        self.mode = "invalid_header"
        reset = self.reset_event()
        try:
            line = f"invalid header: {word:#010x}\r\n".encode()
            while True:
                self.uart.write(line * 4, droppable=True)
                try:
                    await asyncio.wait_for(reset.wait(), INVALID_HEADER_LOOP_S)
                    return
                except TimeoutError:
                    pass
                self.uart.write(
                    _ROM_BANNER + b"rst:0x10 (RTCWDT_RTC_RESET)," + _FLASH_BOOT, droppable=True
                )
        finally:
            self.forget(reset)


def _rst(cause: str) -> bytes:
    return reset_cause(cause).rom
