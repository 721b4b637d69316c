"""Releases of a chosen size for the OTA benchmarks, built as ``simpul release build`` builds
them (mpy-cross, signed by a fleet made for the run) from a copy of ``firmware/*.py`` plus
``bulk.py``, a module of constant bytes that brings the compiled files to the size wanted.
"""

from __future__ import annotations

import math
import random
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleet import keys as fleet_keys
from fleet.release import Release, compile_app, decode_release
from hw.firmware_tools.build import ARCH, compile_file
from tests.ota.conftest import PASSPHRASE, Keys, firmware_copy

#: Bytes of a Block2 block: what boards ask for and the gateway serves.
BLOCK = 1024
BULK = "bulk"


def new_fleet(base: Path) -> Keys:
    """A fleet directory with a root key (kept apart, as offline) and a release key."""
    root_key = base / "usb" / "root.key"
    root_key.parent.mkdir(parents=True)
    fleet_keys.init_fleet(base / "fleet", root_key, PASSPHRASE, now=int(time.time()) - 60)
    return Keys(base / "fleet", root_key, fleet_keys.root_public_key(base / "fleet"))


def _write_bulk(src: Path, size: int) -> Path:
    # Letters and digits from a fixed seed: the same size gives the same module, so two
    # releases built alike share bulk.mpy byte for byte.
    rng = random.Random(7)
    data = "".join(rng.choices(string.ascii_letters + string.digits, k=size))
    path = src / f"{BULK}.py"
    path.write_text(
        '"""Constant bytes that give the OTA benchmark its bundle size (never imported)."""\n\n'
        f'DATA = b"{data}"\n'
    )
    return path


def padded_firmware(where: Path, total: int, **edits: tuple[str, str]) -> Path:
    """A copy of the firmware's sources (with ``edits``, as ``firmware_copy`` takes them) and
    a ``bulk.py`` whose compiled size brings the compiled application to ``total`` bytes."""
    src = firmware_copy(where, **edits)
    with tempfile.TemporaryDirectory(prefix="simpul-bench-") as tmp:
        app = sum(len(data) for data in compile_app(src, Path(tmp) / "app", ARCH).values())
        probe = 64 * 1024
        compiled = compile_file(_write_bulk(src, probe), Path(tmp), ARCH).stat().st_size
    size = total - app - (compiled - probe)
    if size <= 0:
        raise RuntimeError(f"the firmware alone compiles to {app} bytes, over {total}")
    _write_bulk(src, size)
    return src


@dataclass(frozen=True)
class Built:
    """A release file made for a run, and what its manifest says."""

    path: Path
    release: Release

    @property
    def seq(self) -> int:
        return self.release.manifest.seq

    @property
    def total(self) -> int:
        return self.release.manifest.total

    def blocks(self) -> int:
        """Block2 requests a board makes to fetch it whole, the manifest's included."""
        sizes = [len(data) for data in self.release.files.values()]
        sizes.append(len(self.release.manifest_bytes))
        return sum(max(1, math.ceil(size / BLOCK)) for size in sizes)


def build(keys: Keys, where: Path, version: str, total: int, **edits: tuple[str, str]) -> Built:
    """Release ``version`` of the firmware (with ``edits``) padded to ``total`` bytes."""
    path = keys.build(version, padded_firmware(where, total, **edits))
    return Built(path, decode_release(path.read_bytes()))
