"""The firmware's shared test modules (tests/firmware/mpy/mpy_test_*.py) on both interpreters.

On the real MicroPython VM (the WebAssembly build under Node, through
hw/firmware_tools/vm_test_runner.mjs) with a heap the size of an ESP32's, and on CPython, one
pytest case per test function, so both prove the same cases.
"""

import importlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from hw.engines.micropython import ESP32_HEAP
from hw.engines.mpy import vm_package

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
MPY_TESTS = Path(__file__).resolve().parent / "mpy"
RUNNER = ROOT / "hw" / "firmware_tools" / "vm_test_runner.mjs"
VM_ROM = ROOT / "hw" / "engines" / "mpy" / "rom"  # cryptolib, which the VM engine provides

MODULES = sorted(p.stem for p in MPY_TESTS.glob("mpy_test_*.py"))


def _tests_of(module: str) -> list[str]:
    mod = importlib.import_module(module)
    return sorted(n for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n)))


def _run_on_vm(module: str) -> subprocess.CompletedProcess[str]:
    try:
        cmd = [vm_package.node(), str(RUNNER), "--vm", str(vm_package.vm_module())]
    except vm_package.VmError as e:
        pytest.fail(str(e))
    cmd += ["--path", str(FIRMWARE), "--path", str(MPY_TESTS), "--path", str(VM_ROM)]
    cmd += ["--heap", str(ESP32_HEAP), module]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_mpy_test_modules_are_found() -> None:
    assert {"mpy_test_cbor", "mpy_test_senml", "mpy_test_coap", "mpy_test_ringbuf"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_firmware_module_on_micropython_vm(module: str) -> None:
    proc = _run_on_vm(module)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{module} failed on the MicroPython VM:\n{output}"
    lines = proc.stdout.strip().splitlines()
    passed = {line[5:] for line in lines if line.startswith("PASS ")}
    assert passed == set(_tests_of(module)), output
    assert lines[-1] == f"{len(passed)} passed, 0 failed", output


@pytest.mark.parametrize(
    ("module", "name"), [(m, n) for m in MODULES for n in _tests_of(m)], ids=lambda v: str(v)
)
def test_firmware_module_on_cpython(module: str, name: str) -> None:
    test: Callable[[], None] = getattr(importlib.import_module(module), name)
    test()


def test_runner_on_micropython_vm_reports_failures_and_exits_nonzero(tmp_path: Path) -> None:
    (tmp_path / "mpy_fail.py").write_text(
        "def test_good():\n    pass\n\ndef test_bad():\n    assert 1 == 2, 'nope'\n"
    )
    (tmp_path / "mpy_none.py").write_text("X = 1\n")
    base = [vm_package.node(), str(RUNNER), "--vm", str(vm_package.vm_module())]
    base += ["--path", str(tmp_path)]
    proc = subprocess.run([*base, "mpy_fail"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout
    assert "PASS test_good" in proc.stdout
    assert "FAIL test_bad" in proc.stdout
    assert "AssertionError: nope" in proc.stdout
    assert proc.stdout.strip().endswith("1 passed, 1 failed")
    proc = subprocess.run([*base, "mpy_none"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "0 passed, 0 failed" in proc.stdout
    proc = subprocess.run([*base, "mpy_absent"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "ImportError" in proc.stdout
