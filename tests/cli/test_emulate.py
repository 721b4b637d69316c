"""What ``simpul emulate`` and ``simpul demo`` tell a newcomer: every option explained with its
default, a gateway that does not answer named as such, and a summary that names its units."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.cli import build_parser
from hw.demo import summary
from hw.engines.fleet import Fleet, plan_fleet
from tests.support import ROOT, GatewayProcess, free_udp_port


def subcommand(name: str) -> argparse.ArgumentParser:
    groups = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = groups.choices[name]
    return parser


@pytest.mark.parametrize("name", ["emulate", "demo"])
def test_every_option_has_help_and_shows_its_default(name: str) -> None:
    parser = subcommand(name)
    shown = " ".join(parser.format_help().split())
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in shown, action.option_strings
        else:
            # No default to show: the help says what happens without the option, or is a flag.
            assert "(default: None)" not in shown


def emulate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", "emulate", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_emulate_against_a_silent_port_says_the_gateway_is_not_answering(tmp_path: Path) -> None:
    port = free_udp_port()
    done = emulate("--gateway", f"127.0.0.1:{port}", "--boards", "1", "--cycle", "0.5",
                   "--duration", "2", "--state-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"the gateway at coap://127.0.0.1:{port} is not answering" in done.stdout


@pytest.mark.slow
async def test_emulate_against_a_running_gateway_reports_no_silence(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway")
    await asyncio.to_thread(gateway.start)
    try:
        host, port = gateway.address
        done = await asyncio.to_thread(
            emulate, "--gateway", f"{host}:{port}", "--boards", "2", "--cycle", "0.5",
            "--duration", "3", "--state-dir", str(tmp_path / "boards"),
        )  # fmt: skip
    finally:
        gateway.stop()
    assert done.returncode == 0, done.stderr
    assert "not answering" not in done.stdout
    assert "samples (" in done.stdout


def test_demo_summary_counts_readings_and_names_the_samples_still_buffered(
    tmp_path: Path,
) -> None:
    fleet = Fleet(plan_fleet(2, seed=1), tmp_path, ("127.0.0.1", 5683))
    first, second = (r.record for r in fleet.runners)
    first.samples = {1: (1000, 7), 2: (2000, 7), 3: (3000, 7)}
    first.acked_through = 2
    second.samples = {1: (1000, 7)}
    second.acked_through = 1
    line = summary(2, 6.2, fleet, 21, 21, tmp_path / "uplink")
    assert line.startswith(
        "simpul demo: 2 boards for 6 s: 28 readings sampled, 21 stored by the gateway, "
        "21 delivered upstream, 7 readings still buffered on boards (in 1 sample;"
    )
    second.samples[2] = (2000, 7)
    assert "14 readings still buffered on boards (in 2 samples;" in summary(
        2, 6.2, fleet, 21, 21, tmp_path / "uplink"
    )


def test_emulate_on_the_vm_engine_without_the_vm_says_how_to_install_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from hw.engines.mpy import vm_package; "
         "vm_package.SOURCE_ROOT = vm_package.Path(sys.argv[1]); from fleet.cli import main; "
         "sys.exit(main(['emulate', '--gateway', '127.0.0.1:9', '--engine', 'mpy', "
         "'--duration', '1', '--state-dir', sys.argv[1]]))", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the MicroPython VM is not installed" in done.stderr
    assert "run `simpul emulate --install-vm`" in done.stderr
