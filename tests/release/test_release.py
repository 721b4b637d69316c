"""Building a release (fleet/release.py): the app compiled by mpy-cross, signed with the fleet's
release key, one file that verifies end to end; ``simpul release build|show|verify``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet import keys
from fleet.certs import issue_revocations
from fleet.errors import BadManifest, BadRevocations, BuildError, CertificateExpired, KeyRevoked
from fleet.keyfiles import load_root_key
from fleet.release import (
    app_sources,
    build_release,
    compile_app,
    decode_release,
    encode_release,
    resign_release,
    verify_release,
)
from hw.firmware_tools import BOOT_PART, FIRMWARE_DIR
from tests.release.chain import DAY
from tests.release.conftest import ROOT
from tests.release.test_keys import PASSPHRASE, simpul

RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    fleet_dir = tmp_path / "fleet"
    keys.init_fleet(fleet_dir, tmp_path / "root.key", PASSPHRASE, now=int(time.time()) - DAY)
    return fleet_dir


def test_the_app_is_every_firmware_file_but_the_boot_part() -> None:
    names = {p.name for p in app_sources()}
    assert names == {p.name for p in FIRMWARE_DIR.glob("*.py")} - {
        "boot.py",
        "slots.py",
        "flashfs.py",
        "main.py",
    }
    assert {"app.py", "board.py", "pins.py", "config.py", "manifest.py"} <= names
    assert BOOT_PART == ("boot", "slots", "flashfs", "main")
    sys.path.insert(0, str(FIRMWARE_DIR))
    import manifest as board_manifest  # the board refuses the same names

    assert board_manifest._BOOT_PART == BOOT_PART


def test_build_signs_what_mpy_cross_makes(fleet: Path, tmp_path: Path) -> None:
    now = int(time.time())
    data, found = build_release(fleet, version="1.4.0", now=now)
    m = found.verified.manifest
    assert (m.seq, m.version, m.hw, m.boot_min, m.created) == (1, "1.4.0", "esp32", 1, now)
    assert m.mpy & 0xFF == 6  # .mpy version 6; bytecode only, so no architecture
    compiled = compile_app(FIRMWARE_DIR, tmp_path / "mpy", "xtensawin")
    assert decode_release(data).files == compiled
    assert {e.path for e in m.files} == {p.stem + ".mpy" for p in app_sources()}
    assert m.total == sum(map(len, compiled.values()))
    assert found.verified.certificate.kid == keys.load_signer(fleet).kid
    assert len(m.encoded) < 2048  # the manifest a board fetches and checks
    again, _ = build_release(fleet, version="1.4.1", now=now)
    assert decode_release(again).manifest.seq == 2


def test_build_refuses_a_revoked_or_expired_key_before_spending_a_seq(
    fleet: Path, tmp_path: Path
) -> None:
    signer = keys.load_signer(fleet)
    # Revoked: the fleet's list names the current key (as after a botched hand edit).
    root = load_root_key(tmp_path / "root.key", PASSPHRASE)
    listed = issue_revocations(root, seq=2, revoked=[signer.kid], issued=int(time.time()))
    (fleet / "revocations.cose").write_bytes(listed)
    with pytest.raises(KeyRevoked, match="rotate"):
        build_release(fleet, version="1.0.0", now=int(time.time()))
    with pytest.raises(CertificateExpired):
        build_release(fleet, version="1.0.0", now=int(time.time()) + 800 * DAY)
    assert keys.reserve_release_seq(fleet) == 1  # none was spent


def test_build_refuses_bad_versions_and_hardware(fleet: Path) -> None:
    for version in ("1.2", "v1.2.3", "1.2.3-rc1", "01.2.3"):
        with pytest.raises(BuildError, match=r"not X\.Y\.Z"):
            build_release(fleet, version=version, now=int(time.time()))
    with pytest.raises(BuildError, match="hardware class"):
        build_release(fleet, version="1.0.0", hw="ESP32", now=int(time.time()))


def test_build_names_a_file_mpy_cross_refuses(fleet: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("def broken(:\n")
    with pytest.raises(BuildError, match=r"app\.py"):
        build_release(fleet, version="1.0.0", src=src, now=int(time.time()))


def test_a_release_after_rotation_verifies_and_the_old_key_does_not(
    fleet: Path, tmp_path: Path
) -> None:
    now = int(time.time())
    old, _ = build_release(fleet, version="1.0.0", now=now)
    keys.rotate(fleet, tmp_path / "root.key", PASSPHRASE, now=now)
    _new, found = build_release(fleet, version="1.0.1", now=now)
    root = keys.root_public_key(fleet)
    assert found.verified.revocations.seq == 2
    # The old release still verifies alone (its own list is older), but not once a board has
    # seen list 2, which every release after the rotation carries.
    verify_release(old, root, now=now)
    with pytest.raises(BadRevocations, match="older than list 2"):
        verify_release(old, root, now=now, revocations_seen=2)
    # Nor can the old key sign anything new with the new list.
    old_release = decode_release(old)
    assert old_release.manifest.kid != found.verified.manifest.kid


def test_cli_build_show_verify(fleet: Path, tmp_path: Path) -> None:
    env = {keys.FLEET_DIR_ENV: str(fleet)}
    out = tmp_path / "r.release"
    done = simpul("release", "build", "--version", "2.0.0", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("release 2.0.0 seq 1 for esp32: ")
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    shown = simpul("release", "show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "release 2.0.0  seq 1  hardware esp32  (not verified)" in shown.stdout
    assert "app.mpy" in shown.stdout
    assert "revocation list 1" in shown.stdout
    info = json.loads(simpul("release", "show", "--json", str(out)).stdout)
    assert info["seq"] == 1
    paths = {f["path"] for f in info["files"]}
    assert "app.mpy" in paths
    assert "main.mpy" not in paths  # the boot part: MicroPython runs it from the root
    assert info["certificate"]["role"] == "release"
    assert info["unlisted_files"] == []
    verified = simpul(
        "release",
        "verify",
        str(out),
        "--root-pub",
        str(fleet / "root.pub"),
        "--hw",
        "esp32",
        "--installed-seq",
        "0",
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("verified: release 2.0.0 seq 1 for esp32")
    # A release file is never overwritten.
    again = simpul("release", "build", "--version", "2.0.1", "--out", str(out), env=env)
    assert again.returncode == 2
    assert "exists" in again.stderr
    # The default name says version, hardware and seq.
    output = subprocess_in(tmp_path, "release", "build", "--version", "2.0.2", env=env)
    assert (tmp_path / "simpul-2.0.2-esp32-3.release").exists(), output


def test_cli_verify_with_another_root_or_a_damaged_file(fleet: Path, tmp_path: Path) -> None:
    data, _ = build_release(fleet, version="1.0.0", now=int(time.time()))
    out = tmp_path / "r.release"
    out.write_bytes(data)
    other = tmp_path / "other.pub"
    other.write_bytes(
        os.urandom(0)
        + bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    )
    done = simpul("release", "verify", str(out), "--root-pub", str(other))
    assert done.returncode == 1
    assert done.stdout.startswith("refused (certificate): certificate: not signed by the root key")
    out.write_bytes(data[:-10])
    done = simpul("release", "verify", str(out), "--root-pub", str(fleet / "root.pub"))
    assert done.returncode == 1
    assert done.stdout.startswith("refused (malformed): release file: not CBOR")
    done = simpul(
        "release", "verify", str(tmp_path / "absent"), "--root-pub", str(fleet / "root.pub")
    )
    assert done.returncode == 2


def test_release_file_roundtrip_is_strict(fleet: Path) -> None:
    data, _found = build_release(fleet, version="1.0.0", now=int(time.time()))
    release = decode_release(data)
    assert encode_release(release.manifest_bytes, release.files) == data
    with pytest.raises(BadManifest, match="not a simpul release file"):
        decode_release(b"\xa0")


def subprocess_in(cwd: Path, *args: str, env: dict[str, str]) -> str:
    """``simpul ARGS`` run in ``cwd`` (for its default output name)."""
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        check=False,
    )
    return done.stdout + done.stderr


def test_a_release_signed_again_keeps_its_files_under_a_later_seq(fleet: Path) -> None:
    now = int(time.time())
    release_bytes, _ = build_release(fleet, version="1.4.0", now=now)
    old = decode_release(release_bytes)
    again, verified = resign_release(fleet, release_bytes, now=now)
    assert decode_release(again).manifest.seq == verified.release.manifest.seq
    new = verified.release
    assert new.manifest.seq > old.manifest.seq
    assert new.files == old.files
    assert (new.manifest.version, new.manifest.hw) == (old.manifest.version, old.manifest.hw)
    assert [e.sha256 for e in new.manifest.files] == [e.sha256 for e in old.manifest.files]
