"""Where the MicroPython VM is found (a clone's node_modules, else the user's cache), what a
user is told when it is nowhere, and the pinned version npm installs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw.engines.mpy import vm_package

ROOT = Path(__file__).resolve().parents[2]


def fake_vm(root: Path, version: str = vm_package.VERSION) -> Path:
    package = root / "node_modules" / vm_package.PACKAGE
    package.mkdir(parents=True)
    manifest = {"name": vm_package.PACKAGE, "version": version, "main": "micropython.mjs"}
    (package / "package.json").write_text(json.dumps(manifest))
    (package / "micropython.mjs").write_text("export {};\n")
    return package / "micropython.mjs"


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A source root and a cache with no VM in either: (source root, XDG cache home)."""
    source, cache = tmp_path / "site-packages", tmp_path / "cache"
    source.mkdir()
    monkeypatch.setattr(vm_package, "SOURCE_ROOT", source)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return source, cache


def test_pinned_version_is_the_one_package_lock_pins() -> None:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    pinned = lock["packages"][f"node_modules/{vm_package.PACKAGE}"]["version"]
    assert pinned == vm_package.VERSION
    manifest = json.loads((ROOT / "package.json").read_text())
    assert manifest["dependencies"][vm_package.PACKAGE] == pinned


def test_the_cache_is_where_xdg_says(nowhere: tuple[Path, Path]) -> None:
    _, cache = nowhere
    assert vm_package.cache_dir() == cache / "simpul" / "vm"


def test_the_clone_s_vm_wins_over_the_cached_one(nowhere: tuple[Path, Path]) -> None:
    source, _ = nowhere
    assert vm_package.find() is None
    cached = fake_vm(vm_package.cache_dir())
    assert vm_package.vm_module() == cached
    beside = fake_vm(source)
    assert vm_package.vm_module() == beside


def test_an_installed_simpul_without_the_vm_is_told_to_install_it(
    nowhere: tuple[Path, Path],
) -> None:
    with pytest.raises(vm_package.VmError) as missing:
        vm_package.vm_module()
    assert "simpul emulate --install-vm" in str(missing.value)
    assert "npm ci" not in str(missing.value)  # there is no package.json to run it on


def test_a_clone_without_the_vm_is_told_to_run_npm_ci(nowhere: tuple[Path, Path]) -> None:
    source, _ = nowhere
    (source / "package.json").write_text("{}")
    with pytest.raises(vm_package.VmError, match=r"run `npm ci` in "):
        vm_package.vm_module()
