"""The firmware's heap on the real MicroPython VM stays within the ESP32 budget, in the two
moments that matter, each measured on its own and each held to the same budget
(``HEAP_BUDGET``, 48 KB of run-time heap; ``ESP32_HEAP``, 100 KB in all); ``nox -s firmware``
runs this.

1. **The application, always loaded.** Every firmware module but the update-only ones
   (``hw.firmware_tools.UPDATE_ONLY``: SHA-512, Ed25519, COSE and the manifest checks, about
   25 KB of code), which the application never imports at load
   (``tests/firmware/test_update_only.py``). A board on the VM engine sends a full flash
   backlog, then runs normal cycles (``measure_heap``). Its run-time peak must stay within
   ``HEAP_BUDGET``, and its code and run-time peak together within ``ESP32_HEAP``.

2. **An update being checked.** On a bare VM, the application's modules are loaded, then the
   update-only ones, then the manifest of a real release (built by ``fleet.release``) is
   verified by ``manifest.verify_steps`` as a board does: three Ed25519 signatures and the
   manifest's 20 file entries (``measure_update_heap``). What this adds to the heap, the
   update-only code, the manifest and the verification's working set, must stay within
   ``HEAP_BUDGET``: the check runs in the uploader's place, between uploads, so it stands in
   for the application's run-time working set rather than beside it; the application's code
   plus all of it must stay within ``ESP32_HEAP``. Here the firmware is loaded as ``.mpy``,
   as a release installs it (from ``.py`` source the application's code alone is ~20 KB more,
   and code, update and verification together no longer fit an ESP32: a board that checks
   updates must run compiled files, as every release is).

Why they are measured apart: they never coincide in full (the update check does not run
while a backlog is being sent), and their update-only modules are dropped from
``sys.modules`` after the check; what stays (interned names: MicroPython never frees them)
is held below a few KB. The verification's figure is the live heap at the start of each
slice (one bit of a scalar multiplication), after the VM's collection, the same kind of
sampling as the application's between asyncio steps. Within a slice this VM frees nothing,
so the most a slice allocates (big-integer garbage an ESP32 collects as it goes) only bounds
the peak from above; that bound is reported, not budgeted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fleet import keys
from fleet.release import build_release, decode_release
from hw.engines.micropython import ESP32_HEAP
from hw.firmware_tools.heap import HEAP_BUDGET, measure_heap, measure_update_heap
from tests.support import GatewayProcess


@pytest.mark.slow
async def test_application_heap_within_budget_on_micropython_vm(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gateway.start)
    try:
        figures = await asyncio.wait_for(measure_heap(tmp_path / "boards", gateway.address), 90)
    finally:
        gateway.stop()
    assert figures.backlog_records >= 200, figures  # a full ring buffer went out
    assert figures.bridge > 0
    assert figures.code > 10_000, figures  # the probe saw the firmware load
    assert 0 < figures.runtime_peak <= HEAP_BUDGET, figures
    # Code and working set together still fit the heap of a real board.
    assert figures.code + figures.runtime_peak <= ESP32_HEAP, figures


@pytest.mark.slow
def test_update_check_heap_within_budget_on_micropython_vm(tmp_path: Path) -> None:
    now = int(time.time())
    fleet_dir = tmp_path / "fleet"
    keys.init_fleet(fleet_dir, tmp_path / "root.key", "heap test passphrase", now=now)
    data, built = build_release(fleet_dir, version="1.0.0", now=now)
    manifest = decode_release(data).manifest_bytes
    figures = measure_update_heap(manifest, keys.root_public_key(fleet_dir), hw="esp32", now=now)
    assert figures.seq == built.verified.manifest.seq  # it verified, on the VM
    assert figures.slices > 700, figures  # three signatures, one scalar bit per slice
    assert figures.update_code > 10_000, figures  # the probe saw the update-only code load
    assert figures.inputs >= len(manifest), figures
    assert 0 < figures.live_peak <= figures.live_peak_bound, figures
    assert figures.update_peak <= HEAP_BUDGET, figures
    assert figures.app_code + figures.update_peak <= ESP32_HEAP, figures
    # Dropping the update-only modules gives their heap back, but for the names the five
    # modules interned (qstrs stay for the VM's life).
    assert figures.left_after_unload <= 10 * 1024, figures
