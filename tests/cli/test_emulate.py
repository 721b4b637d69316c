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
from hw.demo.summary import SiteFigures, site_table, summary
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


def test_demo_summary_counts_readings_and_names_the_samples_still_buffered() -> None:
    def site(site_id: str, buffered: int, samples: int) -> SiteFigures:
        return SiteFigures(
            site_id, f"gw-{site_id}-1", boards=2, online=2, sampled=14, buffered=buffered,
            buffered_samples=samples, stored=7, delivered=7, recorded=6,
            latest={"pm2_5": 31.0, "temperature": 24.5},
        )  # fmt: skip

    line = summary(6.2, [site("takengon", 7, 1), site("tegal", 0, 0)])
    assert line.startswith(
        "simpul demo: 4 boards at 2 sites for 6 s: 28 readings sampled, 14 stored by the "
        "gateways, 14 delivered upstream, 12 recorded in fleet.db, 7 readings still buffered "
        "on boards (in 1 sample;"
    )
    assert "14 readings still buffered on boards (in 2 samples;" in summary(
        6.2, [site("takengon", 7, 1), site("tegal", 7, 1)]
    )
    table = site_table([site("takengon", 7, 1)]).splitlines()
    assert table[0].split() == [
        "site", "gateway", "boards", "sampled", "stored", "upstream", "fleet.db", "latest"
    ]  # fmt: skip
    assert table[1].split()[:7] == ["takengon", "gw-takengon-1", "2", "14", "7", "7", "6"]
    assert table[1].endswith("PM2.5 31 µg/m³ · 24.5 °C")


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
