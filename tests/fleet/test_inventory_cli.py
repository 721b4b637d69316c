"""``simpul fleet init|status|sites|gateways|boards|alerts|audit``: as a process for a few,
in-process (``fleet.cli.main``) for the rest."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleet.cli import main
from fleet.store import SCHEMA_VERSION, FleetStore
from gateway.batches.keys import load_or_create

ROOT = Path(__file__).resolve().parents[2]


def simpul(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    return tmp_path / "fleet"


@pytest.fixture
def run(
    fleet_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """``simpul fleet …`` in-process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("SIMPUL_OPERATOR", "alice")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["fleet", *args, "--fleet-dir", str(fleet_dir)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def gateway_pub(tmp_path: Path) -> Path:
    """A gateway's public key file, as ``simpul gateway key --public`` prints it."""
    path = tmp_path / "gw1.pub"
    path.write_bytes(load_or_create(tmp_path / "gw-state").public_pem())
    return path


@pytest.fixture
def inventory(run: Any, gateway_pub: Path) -> Any:
    assert run("init")[0] == 0
    assert (
        run(
            "sites",
            "add",
            "north",
            "--name",
            "North bank",
            "--flood",
            "Siaga III=1.5",
            "--flood",
            "siaga1=3.2",
        )[0]
        == 0
    )
    assert run("gateways", "add", "gw1", "--site", "north", "--key", str(gateway_pub))[0] == 0
    return run


def test_init_is_idempotent_and_says_so(fleet_dir: Path) -> None:
    first = simpul("fleet", "init", "--fleet-dir", str(fleet_dir), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "created": True,
        "path": str(fleet_dir / "fleet.db"),
        "schema_version": SCHEMA_VERSION,
    }
    second = simpul("fleet", "init", "--fleet-dir", str(fleet_dir))
    assert second.returncode == 0
    assert f"is ready (schema version {SCHEMA_VERSION})" in second.stdout
    with FleetStore(fleet_dir / "fleet.db") as store:
        assert [e.action for e in store.audit_entries()] == ["init"]


def test_commands_fail_in_one_line_without_a_database(fleet_dir: Path) -> None:
    done = simpul("fleet", "boards", "--fleet-dir", str(fleet_dir))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"simpul fleet boards: error: no fleet database at {fleet_dir / 'fleet.db'}: run"
        " 'simpul fleet init' first"
    ]
    assert not fleet_dir.exists()


def test_every_command_describes_itself() -> None:
    for command in (
        ["init"], ["status"], ["sites"], ["sites", "add"], ["gateways", "add"], ["boards"],
        ["boards", "add"], ["boards", "tag"], ["boards", "retire"], ["alerts"],
        ["alerts", "ack"], ["audit"],
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            main(["fleet", *command, "--help"])
        assert exit_.value.code == 0
    done = simpul("fleet", "boards", "retire", "--help")
    assert "retire a board: it leaves listings" in done.stdout


def test_usage_errors_exit_2(run: Any) -> None:
    with pytest.raises(SystemExit) as exit_:
        run("alerts", "ack", "not-a-number", "--note", "x")
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        run("boards", "add", "b1", "--kind", "air")
    assert exit_.value.code == 2


def test_the_inventory_lists_as_tables_and_json(inventory: Any) -> None:
    run = inventory
    assert run("boards", "add", "a1", "--kind", "air", "--site", "north", "--gateway", "gw1",
               "--tag", "roof")[0] == 0  # fmt: skip
    assert (
        run("boards", "add", "w1", "--kind", "water", "--site", "north", "--gateway", "gw1")[0] == 0
    )
    code, out, _ = run("boards", "--kind", "air")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "BOARD", "KIND", "SITE", "GATEWAY", "RUNS", "OTA", "LAST", "SEEN", "TAGS", "STATUS"
    ]  # fmt: skip
    assert lines[1].split() == ["a1", "air", "north", "gw1", "0", "-", "-", "roof", "active"]
    assert len(lines) == 2
    assert lines[0].index("KIND") == lines[1].index("air")  # aligned
    code, out, _ = run("boards", "--json")
    boards = json.loads(out)["boards"]
    assert [b["board_id"] for b in boards] == ["a1", "w1"]
    assert set(boards[0]) == {
        "board_id", "kind", "site_id", "gateway_id", "enrolled_ms", "retired_ms", "running",
        "ota_state", "ota_detail", "last_seen_ms", "last_health", "health_ms", "tags", "desired",
    }  # fmt: skip
    (site,) = json.loads(run("sites", "--json")[1])["sites"]
    assert (site["site_id"], site["name"], site["flood_levels"]) == (
        "north",
        "North bank",
        {"siaga3": 1.5, "siaga1": 3.2},
    )
    (gateway,) = json.loads(run("gateways", "--json")[1])["gateways"]
    assert len(bytes.fromhex(gateway["public_key"])) == 32
    status = json.loads(run("status", "--json")[1])
    assert (status["sites"], status["gateways"], status["boards"]) == (1, 1, 2)


def test_tag_untag_and_retire(inventory: Any) -> None:
    run = inventory
    run("boards", "add", "a1", "--kind", "air", "--site", "north", "--gateway", "gw1")
    assert run("boards", "tag", "a1", "roof", "east")[1] == "board a1 tags: east, roof\n"
    assert run("boards", "tag", "a1", "east", "--remove")[1] == "board a1 tags: roof\n"
    assert json.loads(run("boards", "--tag", "roof", "--json")[1])["boards"][0]["tags"] == ["roof"]
    assert run("boards", "retire", "a1")[0] == 0
    assert json.loads(run("boards", "--json")[1]) == {"boards": []}
    assert len(json.loads(run("boards", "--all", "--json")[1])["boards"]) == 1
    code, _, err = run("boards", "retire", "a1")
    assert (code, err) == (1, "simpul fleet boards: error: board 'a1' is already retired\n")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["sites", "add", "north", "--name", "x"], "site 'north' already exists"),
        (["gateways", "add", "gw2", "--site", "south", "--key", "KEY"], "unknown site 'south'"),
        (
            ["boards", "add", "b1", "--kind", "air", "--site", "north", "--gateway", "gw9"],
            "unknown gateway 'gw9'",
        ),
        (["boards", "tag", "b9", "roof"], "unknown board 'b9'"),
        (["alerts", "ack", "7", "--note", "seen"], "unknown alert 7"),
        (
            ["sites", "add", "south", "--name", "x", "--flood", "siaga1=1", "--flood", "siaga2=2"],
            "--flood: flood levels must rise from Siaga IV to Siaga I: siaga1 (1 m) is not above",
        ),
        (
            ["sites", "add", "south", "--name", "x", "--flood", "warn=1"],
            "--flood: ",
        ),
    ],
)
def test_failures_exit_1_and_are_audited(
    inventory: Any, gateway_pub: Path, fleet_dir: Path, args: list[str], error: str
) -> None:
    args = [str(gateway_pub) if a == "KEY" else a for a in args]
    code, out, err = inventory(*args)
    assert (code, out) == (1, "")
    assert f": error: {error}" in err
    assert len(err.splitlines()) == 1
    with FleetStore(fleet_dir / "fleet.db") as store:
        last = store.audit_entries()[-1]
    assert last.operator == "alice"
    assert last.result.startswith(f"error: {error}")


def test_a_board_already_enrolled_is_refused(inventory: Any) -> None:
    add = ("boards", "add", "b1", "--kind", "air", "--site", "north", "--gateway", "gw1")
    assert inventory(*add)[0] == 0
    code, _, err = inventory(*add)
    assert (code, err) == (1, "simpul fleet boards: error: board 'b1' is already enrolled\n")


def test_a_bad_key_file_is_refused(inventory: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    code, _, err = inventory("gateways", "add", "gw2", "--site", "north", "--key", str(bad))
    assert code == 1
    assert "is not a public key" in err


def test_every_change_names_its_operator(inventory: Any, fleet_dir: Path) -> None:
    inventory("sites", "add", "south", "--name", "South", "--operator", "bob")
    with FleetStore(fleet_dir / "fleet.db") as store:
        entries = store.audit_entries()
    assert [(e.operator, e.action, e.target, e.result) for e in entries] == [
        ("alice", "init", str(fleet_dir / "fleet.db"), "ok"),
        ("alice", "site.add", "north", "ok"),
        ("alice", "gateway.add", "gw1", "ok"),
        ("bob", "site.add", "south", "ok"),
    ]
    assert entries[2].detail["kid"] == load_kid(entries[2].detail["key_file"])


def load_kid(pem_path: str) -> str:
    from fleet import keyfiles
    from gateway.codec import cose

    return cose.key_id(keyfiles.load_public_key(Path(pem_path))).hex()


def test_alerts_list_and_acknowledge(inventory: Any, fleet_dir: Path) -> None:
    with FleetStore(fleet_dir / "fleet.db") as store:
        alert, _ = store.raise_alert("silent", "b1", "board", {"for_s": 900})
        store.raise_alert("hot", "b2", "board", {})
        store.clear_alert("hot", "b2")
    assert [a["rule"] for a in json.loads(inventory("alerts", "--json")[1])["alerts"]] == ["silent"]
    assert len(json.loads(inventory("alerts", "--all", "--json")[1])["alerts"]) == 2
    code, out, _ = inventory("alerts", "ack", str(alert.id), "--note", "truck sent")
    assert (code, out) == (0, f"alert {alert.id} acknowledged by alice\n")
    (shown,) = json.loads(inventory("alerts", "--json")[1])["alerts"]
    assert (shown["state"], shown["acked_by"], shown["note"]) == ("open", "alice", "truck sent")


def test_audit_verify_exit_codes(inventory: Any, fleet_dir: Path) -> None:
    code, out, _ = inventory("audit", "--verify")
    assert (code, out.split(":")[0]) == (0, "audit log intact")
    code, out, _ = inventory("audit", "--json")
    assert [e["action"] for e in json.loads(out)["entries"]] == ["init", "site.add", "gateway.add"]
    with sqlite3.connect(fleet_dir / "fleet.db") as db:
        db.execute("UPDATE audit SET target = 'south' WHERE seq = 2")
    done = simpul("fleet", "audit", "--verify", "--json", "--fleet-dir", str(fleet_dir))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["intact"] is False
    assert report["problems"] == [
        {
            "seq": 2,
            "kind": "edited",
            "message": "entry 2 was edited: its content no longer matches its digest",
        }
    ]
