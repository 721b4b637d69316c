"""The firmware's heap, measured on the real MicroPython VM, against the ESP32's budget.

An ESP32 running MicroPython has about 100 KB of heap (``ESP32_HEAP``, in
``hw/engines/micropython.py``); the firmware may use at most ``HEAP_BUDGET`` of it.
``measure_heap`` boots one board on the VM engine with its heap probe on (``gc.collect()``
then ``gc.mem_alloc()`` at every call the VM makes to the hardware: each bus transaction,
flash operation and datagram) and records the peak of live heap

- while it sends a full buffered backlog: its flash ring buffer is filled beforehand, on the
  host, with records the firmware's own code encodes, as after days without a gateway;
- during normal cycles afterwards: sample, buffer, upload, health.

The heap is sampled every 2 ms between asyncio steps, where the firmware waits with its
working set (a batch in flight until the gateway's ACK, a sample between sensor reads);
inside a step, objects that crossed into JS stay pinned until the step ends, which is the
bridge's doing, not the firmware's. The budget holds the firmware's *run-time* heap: the peak
less the bridge's modules and the firmware's loaded code, both measured at boot and reported
beside it (loaded from .py source here; as .mpy the code is about a third smaller). The code
is the boot part's, as its ``boot.py`` leaves it (a factory board's empty slot ``a`` first on
``sys.path``), and the application's: every firmware module but the update-only ones
(``UPDATE_ONLY``: SHA-512, Ed25519, COSE and the manifest checks), which are imported only
while an update is checked.

``measure_update_heap`` measures that moment apart: on a bare VM it loads the application's
modules, then the update-only ones, then runs ``manifest.verify_steps`` over a real manifest
one slice (one bit of a scalar multiplication) per call from Node, so the live heap is read
after a collection at each slice's start (this VM collects only between calls); the peak lies
between the largest such reading and that plus the most one slice allocated, and both are
reported, as tests/bench/board_verify.py does for one signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw.engines.base import BoardSpec, provision_flash
from hw.engines.fleet import Fleet, plan_fleet
from hw.engines.mpy import vm_package
from hw.engines.mpy.host import ROM as VM_ROM
from hw.engines.mpy.runner import VmBoardRunner
from hw.firmware_tools import FIRMWARE_DIR, START_ONLY, UPDATE_ONLY, firmware_module
from hw.flash import Flash

# The firmware's run-time heap at most. Its code and run-time together must also fit the
# ESP32's whole heap (hw.engines.micropython.ESP32_HEAP): with OTA slots the code is .mpy on
# flash, loaded into the heap.
HEAP_BUDGET = 48 * 1024

# A node that samples every 0.5 s and reports health every 4th cycle.
CONFIG: dict[str, Any] = {
    "interval_s": 0.5,
    "health_every": 4,
    "coap_ack_timeout_ms": 500,
    "coap_max_retransmit": 2,
    "retry_max_s": 1,
    "watchdog_ms": 60000,
}


@dataclass
class HeapFigures:
    """Bytes of live heap (``gc.mem_alloc()`` after ``gc.collect()``) on the VM."""

    bridge: int  # the VM engine's own modules, before any firmware is loaded
    code: int  # the firmware's: what boot.py leaves, then the app's modules from .py source
    backlog_records: int  # records waiting in flash at boot
    backlog_peak: int  # the whole heap at its most while they were sent
    normal_peak: int  # the whole heap at its most during normal cycles afterwards
    normal_cycles: int

    @property
    def runtime_peak(self) -> int:
        """What the running firmware allocates beyond its loaded code: the budgeted figure."""
        return max(self.backlog_peak, self.normal_peak) - self.bridge - self.code

    @property
    def firmware_peak(self) -> int:
        """Code and run-time data together."""
        return self.code + self.runtime_peak


async def _until(predicate: Callable[[], bool]) -> None:
    """Poll the boards' records (they change from the console, not from an event)."""
    while True:
        if predicate():
            return
        await asyncio.sleep(0.1)


def fill_backlog(flash_dir: Path, spec: BoardSpec, config: dict[str, Any]) -> int:
    """Fill the board's ring buffer to the brim as its firmware would; return the records."""
    ringbuf = firmware_module("ringbuf")
    senml = firmware_module("senml")
    defaults = firmware_module("config").DEFAULTS
    flash = Flash(flash_dir)
    flash.mkdir("/data")
    buffer = ringbuf.RingBuffer(
        flash,
        "/data/buf",
        config.get("buffer_segment_bytes", defaults["buffer_segment_bytes"]),
        config.get("buffer_segments", defaults["buffer_segments"]),
    )
    base = "urn:dev:simpul:" + spec.board_id + ":"
    readings = [
        ("temperature", "Cel", 27.41),
        ("humidity", "%RH", 78.2),
        ("pressure", "Pa", 100934),
        ("pm1", "ug/m3", 12),
        ("pm2_5", "ug/m3", 18),
        ("pm10", "ug/m3", 27),
        ("battery", "V", 3.97),
    ]
    start_ms = int(time.time() * 1000) - 3_600_000
    i = 0
    while buffer.dropped == 0:
        part, n = senml.group(base, start_ms + i * 60_000 + 250, readings)
        buffer.append(bytes((n,)) + part)
        i += 1
    return int(buffer.pending)


async def measure_heap(
    state_dir: Path, gateway: tuple[str, int], normal_cycles: int = 12
) -> HeapFigures:
    """Boot an air node on the VM with a full backlog; the heap's peaks (see the module)."""
    spec = plan_fleet(1, seed=11, config=CONFIG)[0]
    runner = VmBoardRunner(spec, state_dir / spec.board_id, gateway, heap_probe=True)
    flash_dir = runner.root / "flash"
    provision_flash(Flash(flash_dir), runner.provisioned_config())
    backlog = fill_backlog(flash_dir, spec, runner.provisioned_config())
    runner.start()
    try:
        await _until(lambda: runner.record.acked_through >= backlog)
        assert runner.vm is not None
        backlog_peak = runner.vm.heap_peak
        runner.vm.reset_heap_peak()
        seen = len(runner.record.samples)
        await _until(lambda: len(runner.record.samples) >= seen + normal_cycles)
        normal_peak = runner.vm.heap_peak
    finally:
        with contextlib.suppress(Exception):
            await runner.stop()
    marks = runner.vm.heap_marks
    return HeapFigures(
        bridge=marks["bridge"],
        code=marks["firmware_code"] - marks["bridge"],
        backlog_records=backlog,
        backlog_peak=backlog_peak,
        normal_peak=normal_peak,
        normal_cycles=normal_cycles,
    )


async def measure_cpu(
    state_dir: Path, gateway: tuple[str, int], boards: int, seconds: float, interval_s: float
) -> dict[str, float]:
    """CPU of VM boards in normal operation (no heap probe): per board, and the host's share."""
    fleet = Fleet(
        plan_fleet(boards, seed=2, config={**CONFIG, "interval_s": interval_s}),
        state_dir,
        gateway,
        engine="mpy",
    )
    fleet.start()
    runners = [r for r in fleet.runners if isinstance(r, VmBoardRunner)]
    try:
        await _until(lambda: all(r.record.samples for r in runners))
        vm_before = sum(r.cpu_seconds() for r in runners)
        host_before = time.process_time()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        vm = sum(r.cpu_seconds() for r in runners) - vm_before
        host = time.process_time() - host_before
    finally:
        await fleet.stop()
    return {
        "boards": boards,
        "interval_s": interval_s,
        "vm_cpu_percent_per_board": round(100 * vm / elapsed / boards, 2),
        "host_cpu_percent_per_board": round(100 * host / elapsed / boards, 2),
    }


# --- during an update ------------------------------------------------------------------------

# Modules the application holds: all but the boot part's entry point, the chip's board.py
# (the VM has no machine module), the update-only ones and the start-only ones (dropped
# once used); ``vmboard.import_firmware`` loads the same set on the VM engine, start-only
# ones included until the app drops them.
_NOT_APP = ("main", "boot", "board", *UPDATE_ONLY, *START_ONLY)

# Runs inside the VM (vm_heap_slices.mjs calls tick() until it returns False). Each ``yield``
# ends one call; gc.mem_alloc() right after one is the live heap, collected at that return.
_UPDATE_HARNESS = r"""
import binascii
import cryptolib  # built into the ESP32 port (C): not the firmware's heap
import gc
import json
import sys


def _run():
    marks = {"base": gc.mem_alloc()}
    for name in APP:
        __import__(name)
    gc.collect()
    yield
    marks["app"] = gc.mem_alloc()
    for name in UPDATE:
        __import__(name)
    gc.collect()
    yield
    marks["update"] = gc.mem_alloc()
    data = binascii.unhexlify(MANIFEST)
    key = binascii.unhexlify(ROOT)
    gc.collect()
    yield
    marks["inputs"] = gc.mem_alloc()
    steps = sys.modules["manifest"].verify_steps(data, key, 0, HW, NOW, 0, None, None, 1)
    top = bound = largest = total = slices = 0
    result = None
    while result is None:
        live = gc.mem_alloc()
        result = next(steps)
        allocated = gc.mem_alloc() - live  # nothing is freed within a call on this VM
        top = max(top, live)
        bound = max(bound, live + allocated)
        largest = max(largest, allocated)
        total += allocated
        slices += 1
        gc.collect()
        yield
    seq = result.seq
    steps = result = data = key = None
    for name in UPDATE:  # what the app does when an update is over (app.unload)
        sys.modules.pop(name).__dict__.clear()
    gc.collect()
    yield
    marks["unloaded"] = gc.mem_alloc()
    _out["figures"] = {
        "marks": marks,
        "live_peak": top,
        "live_peak_bound": bound,
        "largest_slice": largest,
        "allocated": total,
        "slices": slices,
        "seq": seq,
    }


_out = {}
_gen = _run()


def tick():
    try:
        next(_gen)
    except StopIteration:
        return False
    return True


def report():
    return json.dumps(_out["figures"])
"""


@dataclass
class UpdateHeapFigures:
    """Bytes of live heap on the VM while a board checks a release's manifest, with the
    firmware loaded as a release installs it (.mpy from mpy-cross)."""

    app_code: int  # the application's modules (all but the update-only ones)
    update_code: int  # the update-only modules on top
    inputs: int  # the manifest's bytes and the root key
    live_peak: int  # the most live heap at a slice's start, beyond code and inputs
    live_peak_bound: int  # that plus the most one slice allocated: the peak lies between
    largest_slice: int
    allocated: int  # everything the verification allocated: what a board's GC reclaims
    slices: int
    left_after_unload: int  # beyond the app's code, once the update-only modules are dropped
    seq: int  # the verified manifest's, as a check that it verified

    @property
    def update_peak(self) -> int:
        """What checking an update adds to the application's code on the heap: the update-only
        code, the manifest and the verification's working set. The budgeted figure."""
        return self.update_code + self.inputs + self.live_peak


def measure_update_heap(
    manifest: bytes, root_key: bytes, *, hw: str, now: int
) -> UpdateHeapFigures:
    """Check ``manifest`` on a bare VM as a board would, one slice per call; its heap."""
    from hw.firmware_tools.build import build

    app = sorted(p.stem for p in FIRMWARE_DIR.glob("*.py") if p.stem not in _NOT_APP)
    header = (
        f"APP = {json.dumps(app)}\nUPDATE = {json.dumps(list(UPDATE_ONLY))}\n"
        f"MANIFEST = {manifest.hex()!r}\nROOT = {root_key.hex()!r}\n"
        f"HW = {hw!r}\nNOW = {int(now)}\n"
    )
    driver = Path(__file__).with_name("vm_heap_slices.mjs")
    with tempfile.TemporaryDirectory(prefix="simpul-heap-") as tmp:
        _, failed = build(FIRMWARE_DIR, Path(tmp) / "mpy")
        if failed:
            raise RuntimeError(f"mpy-cross failed: {failed[0]}")
        harness = Path(tmp) / "harness.py"
        harness.write_text(header + _UPDATE_HARNESS)
        cmd = [vm_package.node(), str(driver), "--vm", str(vm_package.vm_module())]
        cmd += ["--path", str(Path(tmp) / "mpy"), "--harness", str(harness)]
        cmd += ["--path", str(VM_ROM)]  # the VM engine's cryptolib
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the update heap harness failed:\n{done.stdout}\n{done.stderr}")
    raw: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    marks = raw["marks"]
    return UpdateHeapFigures(
        app_code=marks["app"] - marks["base"],
        update_code=marks["update"] - marks["app"],
        inputs=marks["inputs"] - marks["update"],
        live_peak=raw["live_peak"] - marks["inputs"],
        live_peak_bound=raw["live_peak_bound"] - marks["inputs"],
        largest_slice=raw["largest_slice"],
        allocated=raw["allocated"],
        slices=raw["slices"],
        left_after_unload=marks["unloaded"] - marks["app"],
        seq=raw["seq"],
    )
