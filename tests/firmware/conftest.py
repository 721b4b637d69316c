"""Firmware tests import the firmware's flat modules (``import cbor``) as the board does."""

import sys
from pathlib import Path

from hw.firmware_tools import install_port_modules

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
MPY_TESTS = Path(__file__).resolve().parent / "mpy"

for _path in (MPY_TESTS, FIRMWARE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

install_port_modules()  # cryptolib, as the ESP32 port has it
