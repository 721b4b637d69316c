"""The host's tools for the firmware: where its source lives, importing it as a board does,
compiling it for the chip, type-checking it against the port's stubs, measuring its heap.

- ``python -m hw.firmware_tools.build``: compile every file with mpy-cross for the ESP32;
- ``python -m hw.firmware_tools.typecheck``: mypy against MicroPython's ESP32 stubs;
- ``hw.firmware_tools.heap``: the firmware's heap, measured on the MicroPython VM, against
  its budget;
- ``vm_test_runner.mjs``: the firmware's shared tests (``tests/firmware/mpy``) on the VM.

The firmware is a flat directory of MicroPython modules (``import cbor``, not
``import firmware.cbor``), as they sit on the board's filesystem; ``firmware_module`` imports
one that way on CPython, for the CPython engine and for tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"

#: The boot part: at the board's root, outside both application slots; OTA never replaces
#: it, and a release may not name these modules (firmware/manifest.py refuses them too).
BOOT_PART = ("boot", "slots", "flashfs", "main")

#: Modules imported only while an update is checked, never by the running application, so
#: their code is on the heap only then (tests/hw_vm/test_heap_budget.py holds both apart,
#: and tests/firmware/test_update_only.py that the app never imports them at load).
UPDATE_ONLY = ("sha512", "ed25519", "cose", "manifest", "updater")

#: Modules the application imports at start and drops (app.START_ONLY): OSCORE's key
#: material and key derivation, done once.
START_ONLY = ("oscorekeys",)


def install_port_modules() -> None:
    """Give CPython what the ESP32 port has built in and the firmware imports: ``cryptolib``
    (AES, from ``hw/engines/micropython.py``). ``hashlib`` and the rest CPython has."""
    if "cryptolib" not in sys.modules:
        from hw.engines.micropython import cryptolib_module

        sys.modules["cryptolib"] = cryptolib_module()


def firmware_module(name: str) -> ModuleType:
    """Import a firmware module (flat, as on the board) from the firmware directory."""
    install_port_modules()
    path = str(FIRMWARE_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)
    __import__(name)
    return sys.modules[name]
