"""An operator's update, with nothing but simpul's commands: keys, a release build, a
gateway that caches and offers it, emulated boards provisioned with the root public key,
and the boards' states read back from the gateway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ota.conftest import PASSPHRASE, simpul
from tests.support import ROOT, GatewayProcess


@pytest.mark.slow
def test_keys_build_add_offer_and_emulated_boards_confirm_by_the_commands_alone(
    tmp_path: Path,
) -> None:
    env = {"SIMPUL_FLEET_DIR": str(tmp_path / "fleet"), "SIMPUL_ROOT_PASSPHRASE": PASSPHRASE}
    (tmp_path / "usb").mkdir()  # the stick the root key is kept on, offline
    made = simpul("fleet", "keys", "init", "--root-key", str(tmp_path / "usb/root.key"), env=env)
    assert made.returncode == 0, made.stderr
    release = tmp_path / "0.2.0.release"
    built = simpul("release", "build", "--version", "0.2.0", "--out", str(release), env=env)
    assert built.returncode == 0, built.stderr
    root_pub = tmp_path / "fleet" / "root.pub"
    gateway = GatewayProcess(
        tmp_path / "gateway", env={"SIMPUL_GATEWAY__OTA__ROOT_PUBLIC_KEY": str(root_pub)}
    )
    gateway.start()
    try:
        state = ["--state-dir", str(gateway.state_dir)]
        added = simpul("gateway", "release", "add", str(release), *state, env=gateway.env)
        assert added.returncode == 0, added.stderr
        for kind in ("air", "water", "bin"):
            offered = simpul(
                "gateway", "desired", "set", "--kind", kind, "--release", "1", *state,
                env=gateway.env,
            )  # fmt: skip
            assert offered.returncode == 0, offered.stderr
        emulated = subprocess.run(
            [
                sys.executable, "-m", "fleet.cli", "emulate", "--gateway",
                f"127.0.0.1:{gateway.port}", "--boards", "6", "--cycle", "0.5",
                "--duration", "20", "--root-pub", str(root_pub),
                "--state-dir", str(tmp_path / "boards"),
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert emulated.returncode == 0, emulated.stderr
        status = simpul("gateway", "desired", "status", *state, env=gateway.env)
    finally:
        gateway.close()
    assert status.returncode == 0, status.stderr
    rows = [line.split("\t") for line in status.stdout.splitlines()]
    assert len(rows) == 6, status.stdout
    assert {(row[1], row[2]) for row in rows} == {("1", "confirmed")}, status.stdout
    assert all(row[3].startswith("release 1 in slot b") for row in rows), status.stdout
