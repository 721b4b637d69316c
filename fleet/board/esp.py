"""Writing MicroPython itself onto a board with esptool, driven as a library.

The board must be in its ROM serial bootloader: esptool's own reset sequence gets it there
over DTR/RTS (a dev board's auto-reset circuit, or an RFC 2217 port that drives EN and IO0);
a board without that circuit needs BOOT held while EN is pressed. esptool's progress goes to
``progress`` like every other transfer of ``simpul board``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet.board.errors import NoBootloader
from fleet.board.transfer import Progress


def install_micropython(
    port: str,
    firmware: Path,
    progress: Progress,
    *,
    before_write: Callable[[str], None] | None = None,
) -> str:
    """Erase the board's flash and write ``firmware`` (a MicroPython ``.bin``) where its
    chip boots from; return the chip's name. :class:`NoBootloader` if none answers.
    ``before_write`` gets the chip's MAC as hex (what MicroPython's ``machine.unique_id()``
    gives) once the chip is known and before anything is erased; what it raises stops it."""
    from esptool.cmds import (
        detect_chip,
        detect_flash_size,
        erase_flash,
        erase_region,
        reset_chip,
        write_flash,
    )
    from esptool.logger import TemplateLogger, log
    from esptool.util import FatalError, flash_size_bytes

    if not firmware.is_file():
        raise NoBootloader(f"no MicroPython image at {firmware}")

    class _Reporter(TemplateLogger):  # type: ignore[misc]
        def print(self, *args: Any, **kwargs: Any) -> None:
            pass

        def note(self, message: str) -> None:
            pass

        def warning(self, message: str) -> None:
            pass

        def error(self, message: str) -> None:
            pass

        def stage(self, finish: bool = False) -> None:
            pass

        def progress_bar(
            self,
            cur_iter: int,
            total_iters: int,
            prefix: str = "",
            suffix: str = "",
            bar_length: int = 30,
        ) -> None:
            progress(f"MicroPython {firmware.name}", cur_iter, total_iters)

        def set_verbosity(self, verbosity: str) -> None:
            pass

    log.set_logger(_Reporter())
    try:
        esp = detect_chip(port, connect_attempts=2)
    except (FatalError, OSError) as exc:
        raise NoBootloader(
            f"no ESP32 bootloader answers on {port}: hold BOOT, press and release EN, release"
            f" BOOT, and try again ({str(exc).splitlines()[0] if str(exc) else 'no answer'})"
        ) from None
    try:
        if before_write is not None:
            try:
                before_write(bytes(esp.read_mac()).hex())
            except BaseException:
                # Refused before anything was erased: the board runs what it had again.
                with contextlib.suppress(FatalError, OSError):
                    reset_chip(esp, "hard-reset")
                raise
        esp = _with_stub(esp)
        if esp.IS_STUB:
            erase_flash(esp)
        else:
            # The ROM has no whole-chip erase; starting a write over the chip erases it.
            erase_region(esp, 0, flash_size_bytes(detect_flash_size(esp) or "4MB"))
        write_flash(esp, [(esp.BOOTLOADER_FLASH_OFFSET, str(firmware))])
        reset_chip(esp, "hard-reset")
        return str(esp.CHIP_NAME)
    except FatalError as exc:
        raise NoBootloader(f"writing MicroPython on {port} failed: {exc}") from None
    finally:
        esp._port.close()


def _with_stub(esp: Any) -> Any:
    """esptool's flasher stub (faster, compressed writes, a whole-chip erase) where the chip
    runs it; the ROM loader itself where it refuses it (a chip in secure download mode, or
    the emulated ESP32, which offers only the ROM's commands)."""
    from esptool.util import FatalError

    try:
        return esp.run_stub()
    except FatalError:
        return esp
