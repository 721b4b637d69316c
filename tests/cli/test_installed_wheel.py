"""simpul installed from a built wheel, with no clone beside it, as a user would have it: the
VM engine says how to get the MicroPython VM, ``simpul emulate --install-vm`` gets it (npm, the
pinned version, into the user's cache), and a board then runs on it.

The wheel goes into a venv of its own; its dependencies come from this test environment's
site-packages (a path in a .pth file), so nothing but the VM is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from hw.engines.mpy import vm_package
from tests.support import ROOT, free_udp_port

SOURCES = ("firmware", "gateway", "fleet", "hw")


def run(
    *cmd: str | Path, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def install_wheel(tmp_path: Path) -> Path:
    """Build simpul's wheel from a copy of the sources; install it in a new venv; its bin/."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in SOURCES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    python = sys.executable
    built = run(python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                "-w", tmp_path / "dist", src, timeout=300)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("simpul-*.whl")
    venv = tmp_path / "venv"
    assert run(python, "-m", "venv", "--without-pip", venv, timeout=120).returncode == 0
    installed = run(python, "-m", "pip", "--python", venv / "bin" / "python", "install",
                    "--no-deps", "-q", wheel, timeout=300)  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "simpul-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


@pytest.mark.slow
def test_a_wheel_installed_simpul_installs_the_vm_and_runs_a_board_on_it(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    bin_dir = install_wheel(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    where = run(bin_dir / "python", "-c", "import hw; print(hw.__file__)",
                cwd=tmp_path, env=env, timeout=60)  # fmt: skip
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout + where.stderr

    state = tmp_path / "state"
    gateway = f"127.0.0.1:{free_udp_port()}"  # nothing answers: the boards sample regardless
    emulate: list[str | Path] = [bin_dir / "simpul", "emulate", "--gateway", gateway,
                                 "--engine", "mpy", "--boards", "1", "--cycle", "0.5",
                                 "--state-dir", state]  # fmt: skip
    missing = run(*emulate, "--duration", "1", cwd=tmp_path, env=env, timeout=120)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "run `simpul emulate --install-vm`" in missing.stderr
    assert "npm ci" not in missing.stderr

    got = run(bin_dir / "simpul", "emulate", "--install-vm", cwd=tmp_path, env=env, timeout=600)
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"MicroPython VM {vm_package.VERSION} ready" in got.stdout
    cached = tmp_path / "cache" / "simpul" / "vm" / "node_modules" / vm_package.PACKAGE
    assert (cached / "package.json").is_file()

    ran = run(*emulate, "--duration", "4", cwd=tmp_path, env=env, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (console,) = state.glob("boards/*/console.log")
    assert "simpul 0.1.0 board " in console.read_text()  # the firmware booted on the VM
