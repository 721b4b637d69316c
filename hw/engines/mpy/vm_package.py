"""Where the MicroPython VM is, and how a simpul installed without a clone gets it.

The VM engine and the firmware's VM tests run the official WebAssembly build of MicroPython,
the npm package ``@micropython/micropython-webassembly-pyscript``, under Node. A clone has it
in ``node_modules`` beside the source after ``npm ci`` (``package-lock.json`` pins it). A
simpul installed from a wheel has no ``package.json`` to run ``npm ci`` on, so
``simpul emulate --install-vm`` installs the same pinned version into the user's cache,
``$XDG_CACHE_HOME/simpul/vm`` (``~/.cache/simpul/vm`` by default). The clone's copy wins
where both exist.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

PACKAGE = "@micropython/micropython-webassembly-pyscript"
# The version package-lock.json pins (tests/hw/test_vm_package.py holds the two together).
VERSION = "1.27.0"
SOURCE_ROOT = Path(__file__).resolve().parents[3]
INSTALL_TIMEOUT_S = 300


class VmError(RuntimeError):
    """The MicroPython VM cannot be started here (no Node, no npm package)."""


def cache_dir() -> Path:
    """Where ``--install-vm`` puts the VM: the user's cache, as XDG says."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "simpul" / "vm"


def candidates() -> list[Path]:
    """Where the package may be, in the order they are tried."""
    return [
        SOURCE_ROOT / "node_modules" / PACKAGE,
        cache_dir() / "node_modules" / PACKAGE,
    ]


def _module_of(package: Path) -> Path:
    manifest = json.loads((package / "package.json").read_text())
    return package / str(manifest.get("main", "micropython.mjs"))


def find() -> Path | None:
    """The VM's ES module (``micropython.mjs``) from the first place that has it, or None."""
    for package in candidates():
        if (package / "package.json").is_file():
            module = _module_of(package)
            if module.is_file():
                return module
    return None


def _how_to_install() -> str:
    if (SOURCE_ROOT / "package.json").is_file():
        return f"run `npm ci` in {SOURCE_ROOT} (or `simpul emulate --install-vm`)"
    return "run `simpul emulate --install-vm`"


def vm_module() -> Path:
    """The VM's ES module, or VmError saying how to install it here."""
    module = find()
    if module is None:
        places = ", ".join(str(p) for p in candidates())
        raise VmError(
            f"the MicroPython VM is not installed (looked in {places}): {_how_to_install()}"
        )
    return module


def node() -> str:
    """The ``node`` executable, or VmError."""
    found = shutil.which("node")
    if found is None:
        raise VmError("node is not installed: install Node.js 20 or later")
    return found


def install(say: Callable[[str], None] = print) -> Path:
    """``npm install`` the pinned VM into the user's cache; return its ES module."""
    npm = shutil.which("npm")
    if npm is None:
        raise VmError("npm is not installed: install Node.js 20 or later, which brings npm")
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": "simpul-vm",
        "private": True,
        "description": "The MicroPython VM for simpul's emulated boards (--install-vm).",
        "dependencies": {PACKAGE: VERSION},
    }
    (target / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    say(f"installing {PACKAGE}@{VERSION} into {target} (npm install)")
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    if done.returncode != 0:
        output = done.stderr.strip() or done.stdout.strip()
        raise VmError(f"npm install failed in {target}:\n{output}")
    package = target / "node_modules" / PACKAGE
    installed = json.loads((package / "package.json").read_text()).get("version")
    if installed != VERSION:
        raise VmError(f"npm installed {PACKAGE} {installed}, not the pinned {VERSION}")
    return _module_of(package)
