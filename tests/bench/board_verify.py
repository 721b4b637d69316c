"""On-board verification on the MicroPython VM: time and live heap of checking a signed
release manifest (a ~300-byte manifest as COSE_Sign1, Ed25519) and of hashing a 128 KB bundle
with SHA-512 (firmware/sha512.py, pure MicroPython) and SHA-256 (``hashlib``, in C), with an
estimate for a 240 MHz ESP32 and how it is made.

Heap. This VM (the WebAssembly build, ``micropython-webassembly-pyscript``) collects garbage
only when control returns to JavaScript, never inside a call (its ``gc.collect()`` only asks
for one), so the heap cannot be sampled in the middle of one long call. The measured work
therefore runs in slices, the firmware's own ``verify_steps`` (one bit of the scalar
multiplication per slice) or one 1 KB block of the bundle per slice, each slice a call from
Node. At each slice's start the heap has just been collected, so ``gc.mem_alloc()`` is the
live heap there; within a slice nothing is freed, so what it allocates is counted whole. The
peak of live heap over the operation lies between the largest live figure at a slice start
and that plus the most any one slice allocated; both are reported, less the live heap before
the operation (modules, inputs). ``allocated`` is the sum over all slices: what the garbage
collector of a board has to reclaim.

Time. Each operation runs whole in one call, timed by Node around it (``performance.now()``),
in rounds after a warm-up: each round runs an operation and the probes below back to back,
so they meet the same load on a shared host; fastest and median are reported. No collection happens
inside a call on this VM, where an ESP32 collects whenever its ~100 KB heap fills.

ESP32 estimate. No ESP32 was at hand, so VM times are scaled by how much slower an ESP32 runs
the same MicroPython code, taken from MicroPython's own benchmark suite (tests/perf_bench,
N=100 M=100): the scores published for an ESP32 in micropython/micropython PR #7850 (2021,
the port's optimisations in; a generic ESP32 build, which then ran at ESP-IDF's default
160 MHz) against the same two benchmarks run on this VM exactly as the operations here are
(one call each, timed by Node, fastest of 75), on the calibration host (AMD EPYC, 2 vCPUs,
Node 20.20; MicroPython 1.27.0 WebAssembly):

- big-int arithmetic (Ed25519's field operations): ``bm_pidigits``, 65 digits in 2.11 ms on
  the VM, score 30 800, against 591.97 on the ESP32: an ESP32 takes 52 times as long;
- small-int bit operations (``sha512``'s limbs): ``misc_aes``, 4.85 ms, score 6 600, against
  334.52: 19.7 times as long.

Those ratios are scaled by 160/240 for a 240 MHz clock (``machine.freq(240000000)``), which
flatters the ESP32 (instruction fetch from flash does not speed up with the core). The VM's
speed depends on the host and its load, so each round also times two probes (a big-int and
a small-int loop) whose fastest times on the calibration host are recorded below, and scales
by the difference; the estimate is the median over rounds. A verify is split into its
SHA-512 part (small ints) and the rest (big ints). SHA-256 is C (``hashlib``; mbedTLS, with
the SHA hardware, on an ESP32), so no ratio of interpreters applies and it is not
estimated. Unknowns: the 2021 firmware against today's; the clock of the published run (had
it been 240 MHz already, the estimates are 1.5 times too low); how an ESP32's garbage
collections (the VM makes none inside a call) weigh on a verify against on bm_pidigits,
which allocates big ints alike. Expect the estimate within a factor of about 1.5 either
way; a board replaces it.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
MPY_TESTS = ROOT / "tests" / "firmware" / "mpy"
VM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
BUNDLE_KB = 128

# How many ms a 240 MHz ESP32 takes per ms of this VM on the calibration host (see the module
# docstring): perf_bench score on the VM / score on an ESP32 at 160 MHz, times 160/240.
ESP32_240_PER_VM = {
    "bigint": (65e3 / 2.11) / 591.97 * 160 / 240,
    "smallint": (32e3 / 4.85) / 334.52 * 160 / 240,
}
# The probes' fastest ms on the calibration host, timed beside those benchmarks.
CALIBRATION_PROBE_MS = {"bigint": 6.70, "smallint": 23.8}

# Runs inside the VM. Operations are set up by name; ``slice_()`` does one slice and says if
# more remain; ``run()`` does a whole operation in one call for timing.
HARNESS = r"""
import gc
import json

import cose
import ed25519
import hashlib
import sha512
from mpy_test_cose import PUBLIC_KEY, SIGNED_BY_PYCOSE

_op = {}


def _chunks(make):
    h = make()
    block = bytearray(1024)
    for i in range(BUNDLE_KB):
        block[0] = i & 0xFF
        block[1023] = (i * 7) & 0xFF
        h.update(block)
        yield None
    h.digest()
    yield None


def _signed_parts():
    protected, payload, to_be_signed, signature = cose._checked(SIGNED_BY_PYCOSE, b"")
    return to_be_signed, signature


def _sha512_of_challenge():
    to_be_signed, signature = _signed_parts()
    h = sha512.sha512(signature[0:32])
    h.update(PUBLIC_KEY)
    h.update(to_be_signed)
    return h.digest()


def _steps(name):
    if name == "cose_verify":
        return cose.verify_steps(SIGNED_BY_PYCOSE, PUBLIC_KEY, b"", 1)
    if name == "sha512_bundle":
        return _chunks(sha512.sha512)
    if name == "sha256_bundle":
        return _chunks(hashlib.sha256)
    raise ValueError(name)


def start(name):
    gc.collect()
    _op["name"] = name
    _op["steps"] = _steps(name)
    _op["base"] = None
    _op["live"] = 0
    _op["slice"] = 0
    _op["bound"] = 0
    _op["allocated"] = 0
    _op["slices"] = 0


def slice_():
    live = gc.mem_alloc()  # just collected: the call before this one asked for it
    if _op["base"] is None:
        _op["base"] = live
    more = True
    try:
        next(_op["steps"])
    except StopIteration:
        more = False
    allocated = gc.mem_alloc() - live  # nothing is freed within a call on this VM
    _op["live"] = max(_op["live"], live)
    _op["slice"] = max(_op["slice"], allocated)
    _op["bound"] = max(_op["bound"], live + allocated)
    _op["allocated"] += allocated
    _op["slices"] += 1
    gc.collect()  # when this call returns to JS
    return more


def finish():
    base = _op["base"]
    _op["steps"] = None
    return json.dumps({
        "live_peak": _op["live"] - base,
        "live_peak_bound": _op["bound"] - base,
        "largest_slice": _op["slice"],
        "allocated": _op["allocated"],
        "slices": _op["slices"],
    })


def probe_bigint():
    p = 2**255 - 19
    x = 3**160 % p
    for _ in range(3000):
        x = x * x % p
    return x & 1


def probe_smallint():
    a = 0x1234
    b = 0x5678
    for i in range(30000):
        a = ((a >> 3 | b << 13) ^ (b >> 7)) & 0xFFFF
        b = (b + a + i) & 0xFFFF
    return a


def run(name):
    if name == "cose_verify":
        cose.verify(SIGNED_BY_PYCOSE, PUBLIC_KEY)
    elif name == "sha512_of_challenge":
        _sha512_of_challenge()
    elif name == "probe_bigint":
        probe_bigint()
    elif name == "probe_smallint":
        probe_smallint()
    else:
        for _ in _steps(name):
            pass
    gc.collect()


def live():
    return gc.mem_alloc()


def load(names):
    for name in names.split():
        __import__(name)
    gc.collect()


def sizes():
    return json.dumps({
        "manifest_payload": len(cose.verify(SIGNED_BY_PYCOSE, PUBLIC_KEY)[1]),
        "sign1": len(SIGNED_BY_PYCOSE),
        "sig_structure": len(_signed_parts()[0]),
    })
"""

# Runs in Node: loads the VM, copies the firmware and the shared COSE test module into it,
# and drives the harness, one call per slice.
DRIVER = r"""
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [vmModule, firmwareDir, mpyTestsDir, harnessFile, groups] = process.argv.slice(2);
const { loadMicroPython } = await import(pathToFileURL(vmModule).href);
const output = [];
const mp = await loadMicroPython({
  heapsize: 1024 * 1024,
  stdout: (line) => output.push(line),
  stderr: (line) => output.push(line),
});
mp.FS.mkdir("/lib");
const copy = (dir, name) => mp.FS.writeFile(`/lib/${name}`, fs.readFileSync(path.join(dir, name)));
for (const name of fs.readdirSync(firmwareDir)) {
  if (name.endsWith(".py")) copy(firmwareDir, name);
}
copy(mpyTestsDir, "mpy_test_cose.py");
mp.runPython(`
import sys
sys.path.insert(0, "/lib")
import gc
def live():
    return gc.mem_alloc()
gc.collect()
`);
const py = (name) => mp.globals.get(name);
const result = { heap: {}, rounds: {}, code: {} };

const before = py("live")();
mp.runPython("import cbor, errors, binascii, hashlib, json\nimport gc\ngc.collect()");
const withCodecs = py("live")();
mp.runPython("import sha512, ed25519, cose\nimport gc\ngc.collect()");
result.code.signature_modules = py("live")() - withCodecs;
result.code.before = withCodecs - before;

mp.runPython(fs.readFileSync(harnessFile, "utf8"));
result.sizes = JSON.parse(py("sizes")());
for (const name of ["cose_verify", "sha512_bundle", "sha256_bundle"]) {
  py("start")(name);
  while (py("slice_")()) {}
  result.heap[name] = JSON.parse(py("finish")());
}
// Timing in rounds: each round runs a group's operations once each, back to back, so an
// operation and the probes beside it meet the same load on a shared host.
for (const [group, spec] of Object.entries(JSON.parse(groups))) {
  for (const name of spec.ops) py("run")(name);  // warm-up
  result.rounds[group] = [];
  for (let i = 0; i < spec.rounds; i++) {
    const round = {};
    for (const name of spec.ops) {
      const t0 = performance.now();
      py("run")(name);
      round[name] = performance.now() - t0;
    }
    result.rounds[group].push(round);
  }
}
process.stdout.write(JSON.stringify(result) + "\n");
"""


def _vm_module() -> Path:
    try:  # the VM engine knows where npm or --install-vm put the package
        from hw.engines.mpy.vm_package import vm_module

        return vm_module()
    except ImportError:
        return ROOT / "node_modules" / VM_PACKAGE / "micropython.mjs"


# Timed operations, in rounds (see DRIVER): the ESP32 estimate of each round uses the probes
# timed in that round.
GROUPS = {
    "verify": {
        "ops": ["probe_bigint", "probe_smallint", "cose_verify", "sha512_of_challenge"],
        "rounds": 15,
    },
    "bundle": {"ops": ["probe_smallint", "sha512_bundle", "sha256_bundle"], "rounds": 5},
}


def measure_on_vm() -> dict[str, Any]:
    """The raw figures from one VM session (see the module docstring)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    with tempfile.TemporaryDirectory(prefix="simpul-bench-") as tmp:
        driver = Path(tmp) / "driver.mjs"
        driver.write_text(DRIVER)
        harness = Path(tmp) / "harness.py"
        harness.write_text(f"BUNDLE_KB = {BUNDLE_KB}\n" + HARNESS)
        args = [node, str(driver), str(_vm_module()), str(FIRMWARE), str(MPY_TESTS)]
        done = subprocess.run(
            [*args, str(harness), json.dumps(GROUPS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the VM bench failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _esp32_ms(vm_ms: float, kind: str, probe_ms: float) -> float:
    """``vm_ms`` of ``kind`` work, timed beside a probe of that kind that took ``probe_ms``,
    as milliseconds on a 240 MHz ESP32."""
    return vm_ms * CALIBRATION_PROBE_MS[kind] / probe_ms * ESP32_240_PER_VM[kind]


def _verify_esp32_ms(round_: dict[str, float]) -> float:
    sha = round_["sha512_of_challenge"]
    rest = max(round_["cose_verify"] - sha, 0.0)
    return _esp32_ms(sha, "smallint", round_["probe_smallint"]) + _esp32_ms(
        rest, "bigint", round_["probe_bigint"]
    )


def board_verify(seconds: float) -> dict[str, Any]:
    """The scenario: figures for bench-results/ (``seconds`` is not used: fixed work)."""
    raw = measure_on_vm()
    times: dict[str, list[float]] = {}
    for rounds in raw["rounds"].values():
        for round_ in rounds:
            for name, ms in round_.items():
                times.setdefault(name, []).append(ms)
    verify_rounds, bundle_rounds = raw["rounds"]["verify"], raw["rounds"]["bundle"]
    figures = {
        "manifest": raw["sizes"],
        "vm_ms_fastest": {k: round(min(v), 1) for k, v in times.items()},
        "vm_ms_median": {k: round(statistics.median(v), 1) for k, v in times.items()},
        "vm_heap_bytes": raw["heap"],
        "code_bytes_loaded_from_source": raw["code"]["signature_modules"],
        "esp32_240mhz_ms_estimate": {
            "cose_verify": round(statistics.median(_verify_esp32_ms(r) for r in verify_rounds)),
            "sha512_bundle": round(
                statistics.median(
                    _esp32_ms(r["sha512_bundle"], "smallint", r["probe_smallint"])
                    for r in bundle_rounds
                )
            ),
            "host_slowdown_vs_calibration": {
                kind: round(statistics.median(times[f"probe_{kind}"]) / ms, 2)
                for kind, ms in CALIBRATION_PROBE_MS.items()
            },
        },
    }
    return {
        "method": (
            "the MicroPython VM (WebAssembly, Node) with the firmware's .py files: cose.verify "
            f"of a pycose-made COSE_Sign1 (EdDSA) over a {raw['sizes']['manifest_payload']}-byte "
            f"manifest; SHA-512 (firmware/sha512.py) and SHA-256 (hashlib) of {BUNDLE_KB} KB fed "
            "in 1 KB blocks. Time: one call per operation, Node's performance.now() around it, "
            "fastest and median over rounds after a warm-up. Heap: the operation in slices "
            "(one scalar bit of the verify, one block of the hash), a call each; live = "
            "gc.mem_alloc() at a "
            "slice's start, right after the VM's collection; live_peak is the largest, less the "
            "live heap before; live_peak_bound adds the most one slice allocated (the true peak "
            "lies between); allocated sums all slices. ESP32 estimate: VM time x (VM/ESP32 "
            "perf_bench ratio: bm_pidigits for big ints, misc_aes for the SHA-512 part) x "
            "160/240 MHz, corrected for host speed by two probes; see tests/bench/board_verify.py"
        ),
        "figures": figures,
    }


if __name__ == "__main__":
    print(json.dumps(board_verify(0.0), indent=2))
