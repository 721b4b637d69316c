"""``simpul demo``, as the README's Quick start runs it, headless with --duration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

SUMMARY = re.compile(
    r"(?P<boards>\d+) boards for \d+ s: (?P<sampled>\d+) readings sampled, (?P<stored>\d+) "
    r"stored by the gateway, (?P<delivered>\d+) delivered upstream"
)


@pytest.mark.slow
def test_demo_runs_headless_and_its_summary_matches_upstream(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "demo", "--boards", "6", "--duration", "6",
         "--cycle", "0.5", "--state-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = SUMMARY.search(done.stdout)
    assert found, done.stdout
    sampled, stored, delivered = (int(found[k]) for k in ("sampled", "stored", "delivered"))
    assert found["boards"] == "6"
    assert 0 < delivered == stored <= sampled
    lines = [
        json.loads(raw)
        for path in (tmp_path / "gateway" / "uplink").glob("*.jsonl")
        for raw in path.read_text().splitlines()
    ]
    assert len(lines) == delivered
    assert {line["gateway"] for line in lines} == {"demo-gw"}
    assert len({line["board"] for line in lines}) == 6
    # The demo signs its readings and says how to check them; the command it names works.
    check = re.search(r"check them with: simpul (verify .*)$", done.stdout, re.MULTILINE)
    assert check, done.stdout
    verified = subprocess.run(
        [sys.executable, "-m", "fleet.cli", *check[1].split()],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "OK: every batch verified" in verified.stdout
    signed = re.search(r"(\d+) readings, 0 repeats", verified.stdout)
    assert signed, verified.stdout
    assert 0 < int(signed[1]) <= delivered  # the last second's readings wait for a batch


def test_emulate_names_a_bad_gateway_address() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "emulate", "--gateway", "nowhere"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "expected HOST:PORT, got 'nowhere'" in done.stderr
