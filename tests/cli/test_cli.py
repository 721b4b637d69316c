"""The ``simpul`` command itself: its version, and its groups' help."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def simpul(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_names_the_installed_release() -> None:
    done = simpul("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"simpul {version('simpul')}"


def test_every_group_is_listed_in_the_help() -> None:
    done = simpul("--help")
    assert done.returncode == 0
    for group in ("gateway", "verify", "emulate", "demo", "fleet", "release"):
        assert group in done.stdout
