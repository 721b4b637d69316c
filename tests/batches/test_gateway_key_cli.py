"""``simpul gateway key``: the command line over the gateway's identity."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.batches.verify import KeySet

ROOT = Path(__file__).resolve().parents[2]


def key_command(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", "gateway", "key", "--state-dir", str(state), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_public_key_loads_into_a_consumers_key_set_and_matches_the_kid(tmp_path: Path) -> None:
    created = key_command(tmp_path, "--init")
    assert created.returncode == 0, created.stderr
    public = key_command(tmp_path, "--public")
    assert public.stdout == created.stdout
    assert public.returncode == 0, public.stderr
    keys = KeySet()
    (kid,) = keys.add_pem(public.stdout)
    shown = key_command(tmp_path, "--kid")
    assert shown.stdout.strip() == kid.hex()
    private = tmp_path / "keys" / "gateway.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "PRIVATE" not in public.stdout + public.stderr


def test_rotate_prints_the_next_key_and_keeps_signing_with_the_current(tmp_path: Path) -> None:
    key_command(tmp_path, "--init")
    before = key_command(tmp_path, "--kid").stdout.strip()
    rotate = key_command(tmp_path, "--rotate")
    assert rotate.returncode == 0, rotate.stderr
    keys = KeySet()
    (next_kid,) = keys.add_pem(rotate.stdout)
    assert next_kid.hex() != before
    assert f"key {next_kid.hex()} will be announced by the next batch" in rotate.stderr
    # Until a batch has announced it, the current key stays the one that signs.
    assert key_command(tmp_path, "--kid").stdout.strip() == before


def test_key_needs_one_of_public_kid_rotate(tmp_path: Path) -> None:
    result = key_command(tmp_path)
    assert result.returncode == 2
    assert "one of the arguments --init --public --kid --rotate is required" in result.stderr


@pytest.mark.parametrize("option", ["--public", "--kid", "--rotate"])
def test_reading_a_key_never_creates_one(tmp_path: Path, option: str) -> None:
    mistyped = tmp_path / "statte"
    result = key_command(mistyped, option)
    assert result.returncode == 2
    assert f"no gateway key in {mistyped / 'keys'}" in result.stderr
    assert "simpul gateway key --init" in result.stderr
    assert result.stdout == ""
    assert not mistyped.exists()
