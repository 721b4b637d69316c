"""The gateway as a systemd service, in parts: sd_notify, journal lines, the unit and its
installation, the disk verdict, and the monotonic clocks of the batcher and the keeper."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.service import journal
from gateway.service.install import install_plan, uninstall_plan
from gateway.service.notify import Notifier, supervise, watchdog_interval_s
from gateway.service.unit import UnitOptions, unit_text
from gateway.store.budget import FS_RESERVE_BYTES, Consumers, OutboxKeeper, disk_state
from gateway.store.outbox import Outbox
from gateway.store.schema import prepare
from tests.batches.test_batcher import NOW_MS, batcher, fill
from tests.support import ROOT

# -- sd_notify -----------------------------------------------------------------------------


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"simpul-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    yield "@" + name, sock
    sock.close()


def test_notify_reaches_an_abstract_namespace_socket(
    abstract_socket: tuple[str, socket.socket],
) -> None:
    address, sock = abstract_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier.ready("serving 3 boards")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving 3 boards"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096).startswith(b"STOPPING=1\n")
    notifier.close()


def test_notify_to_a_path_and_none_without_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert Notifier(str(path)).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
    silent = Notifier.from_environ({})
    assert not silent.enabled
    assert not silent.ready()
    assert not silent.watchdog()
    assert not silent.stopping()


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_this_pid() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(mine) == 1.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}) is None


async def test_watchdog_pings_only_while_healthy(
    abstract_socket: tuple[str, socket.socket],
) -> None:
    address, sock = abstract_socket
    sock.setblocking(False)
    healthy = [True]

    async def check(timeout_s: float) -> bool:
        return healthy[0]

    task = asyncio.create_task(supervise(Notifier(address), check, lambda: "fine", interval_s=0.05))
    try:
        await asyncio.sleep(0.3)
        before = _drain(sock)
        healthy[0] = False
        await asyncio.sleep(0.06)
        _drain(sock)
        await asyncio.sleep(0.3)
        during = _drain(sock)
    finally:
        task.cancel()
    assert before.count(b"WATCHDOG=1") >= 4
    assert b"STATUS=fine" in before  # once: it did not change afterwards
    assert b"WATCHDOG=1" not in during


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            return got


# -- journal -------------------------------------------------------------------------------


def test_journal_lines_carry_syslog_priorities_and_no_timestamp() -> None:
    formatter = journal.JournalFormatter()

    def line(level: int, message: str) -> str:
        record = logging.LogRecord("gateway.x", level, __file__, 1, message, None, None)
        return formatter.format(record)

    assert line(logging.ERROR, "writer gone") == "<3>gateway.x: writer gone"
    assert line(logging.WARNING, "w") == "<4>gateway.x: w"
    assert line(logging.INFO, "i") == "<6>gateway.x: i"
    assert line(logging.DEBUG, "d") == "<7>gateway.x: d"
    assert line(logging.CRITICAL, "c") == "<2>gateway.x: c"
    # Each line of a multi-line message (a traceback) keeps the priority.
    assert line(logging.ERROR, "a\nb") == "<3>gateway.x: a\n<3>b"


def test_journal_stream_is_recognised_by_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as stream:
        st = os.fstat(stream.fileno())
        assert journal.is_journal_stream(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal.is_journal_stream(stream, {"JOURNAL_STREAM": f"{st.st_dev}:1"})
        assert not journal.is_journal_stream(stream, {"JOURNAL_STREAM": "junk"})
        assert not journal.is_journal_stream(stream, {})
    assert not journal.is_journal_stream(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


# -- the unit and its installation ---------------------------------------------------------


def simpul(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", "gateway", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_install_into_a_staging_root_is_verified_idempotent_and_uninstalls(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    exec_path = shutil.which("true") or "/bin/true"  # any executable: verify checks it exists
    first = simpul("install", "--root", str(root), "--exec", exec_path)
    assert first.returncode == 0, first.stderr
    unit = root / "etc/systemd/system/simpul-gateway.service"
    text = unit.read_text()
    for directive in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=on-failure",
        "User=simpul",
        "StateDirectory=simpul",
        "ConfigurationDirectory=simpul",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n",
        "SystemCallFilter=@system-service",
        "ReadWritePaths=/var/lib/simpul",
        "SupplementaryGroups=gpio dialout",
        f"ExecStart={exec_path} gateway run --config /etc/simpul/gateway.toml",
    ):
        assert directive in text, directive
    sysusers = root / "etc/sysusers.d/simpul.conf"
    assert sysusers.read_text().startswith("#")
    assert "state_dir" in (root / "etc/simpul/gateway.toml").read_text()
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        # verify exits 0 on a directive it ignores; what it says is the verdict.
        assert verify.returncode == 0, verify.stderr
        assert verify.stderr == ""
    if shutil.which("systemd-sysusers"):
        users = subprocess.run(
            ["systemd-sysusers", "--dry-run", f"--root={root}", str(sysusers)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = users.stdout + users.stderr
        assert users.returncode == 0, said
        assert "Creating user 'simpul'" in said
    # An operator's config survives a second install, which changes nothing else.
    (root / "etc/simpul/gateway.toml").write_text('[gateway]\ngateway_id = "gw-1"\n')
    second = simpul("install", "--root", str(root), "--exec", exec_path)
    assert second.returncode == 0
    assert second.stdout.count("unchanged") == 3, second.stdout
    assert unit.read_text() == text
    assert "gw-1" in (root / "etc/simpul/gateway.toml").read_text()
    (root / "var/lib/simpul").mkdir(parents=True)
    gone = simpul("uninstall", "--root", str(root))
    assert gone.returncode == 0
    assert not unit.exists()
    assert not (root / "etc/sysusers.d/simpul.conf").exists()
    assert (root / "var/lib/simpul").is_dir()
    assert (root / "etc/simpul/gateway.toml").exists()
    assert "--purge" in gone.stdout
    purged = simpul("uninstall", "--root", str(root), "--purge")
    assert purged.returncode == 0
    assert not (root / "var/lib/simpul").exists()
    assert not (root / "etc/simpul").exists()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = simpul("install", "--root", str(tmp_path), "--dry-run", "--exec", "/usr/bin/simpul")
    assert result.returncode == 0
    assert "write " in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_live_install_reloads_enables_and_starts_unless_told_not_to() -> None:
    options = UnitOptions("/usr/local/bin/simpul")
    commands = [s.command for s in install_plan(Path("/"), options, start=True) if s.command]
    assert commands == [
        ("systemd-sysusers", "/etc/sysusers.d/simpul.conf"),
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "simpul-gateway.service"),
    ]
    quiet = install_plan(Path("/"), options, start=False, has_sysusers=False)
    assert quiet[-1].command == ("systemctl", "enable", "simpul-gateway.service")
    assert "useradd --system" in " ".join(quiet[-3].command)
    staged = install_plan(Path("/stage"), options, start=True)
    assert not any(s.command for s in staged)
    removal = uninstall_plan(Path("/"), purge=False)
    assert removal[0].command == ("systemctl", "disable", "--now", "simpul-gateway.service")
    assert not any(s.path == Path("/var/lib/simpul") for s in removal)
    assert any(s.path == Path("/var/lib/simpul") for s in uninstall_plan(Path("/"), purge=True))


def test_unit_refuses_a_relative_command() -> None:
    with pytest.raises(ValueError, match="absolute"):
        unit_text(UnitOptions("simpul"))


# -- the disk verdict ----------------------------------------------------------------------


def test_disk_state_names_ok_nearly_full_and_full() -> None:
    roomy = (10 << 30, 16 << 30)
    assert disk_state(100, 1000, policy="refuse", filesystem=roomy)["state"] == "ok"
    assert disk_state(950, 1000, policy="refuse", filesystem=roomy)["state"] == "nearly_full"
    assert disk_state(1001, 1000, policy="refuse", filesystem=roomy)["state"] == "full"
    assert disk_state(10**9, 0, policy="refuse", filesystem=roomy)["state"] == "ok"  # no budget
    sd_nearly = (1 << 30, 16 << 30)  # the SD card itself: 15 of 16 GiB used
    assert disk_state(0, 0, policy="refuse", filesystem=sd_nearly)["state"] == "nearly_full"
    sd_full = (FS_RESERVE_BYTES - 1, 16 << 30)
    full = disk_state(0, 0, policy="drop_oldest", filesystem=sd_full)
    assert full["state"] == "full"
    assert full["fs_free_bytes"] == FS_RESERVE_BYTES - 1
    assert disk_state(0, 0, policy="refuse", filesystem=None)["state"] == "ok"


# -- monotonic timers: the batcher and the keeper ------------------------------------------


def test_batcher_waits_by_the_monotonic_clock_whatever_the_wall_clock_does(
    tmp_path: Path,
) -> None:
    prepare(tmp_path / "gateway.db")
    wall = [NOW_MS]
    mono = [100.0]
    b = batcher(tmp_path, max_readings=100, max_age_ms=1000)
    b.clock_ms = lambda: wall[0]
    b.monotonic = lambda: mono[0]
    b.batch_once()
    fill(tmp_path / "gateway.db", 5, received_ms=NOW_MS)
    assert b.due_in_ms() == 1000  # seen now: due in max_age
    wall[0] = NOW_MS - 6 * 3_600_000  # set back six hours
    mono[0] += 1.0
    assert b.due_in_ms() == 0
    assert b.batch_once() == 5
    fill(tmp_path / "gateway.db", 5, first=5, received_ms=wall[0])
    assert b.due_in_ms() == 1000
    wall[0] += 12 * 3_600_000  # six hours ahead of the start
    assert b.due_in_ms() == 1000  # not cut early either
    mono[0] += 0.5
    assert b.due_in_ms() == 500


def test_keeper_ages_delivered_readings_by_the_monotonic_clock(tmp_path: Path) -> None:
    db_path = tmp_path / "gateway.db"
    prepare(db_path)
    wall, mono = [NOW_MS], [0.0]
    keeper = OutboxKeeper(
        db_path,
        Consumers(False, ["file"], []),
        keep_delivered_ms=60_000,
        clock_ms=lambda: wall[0],
        monotonic=lambda: mono[0],
    )
    fill(db_path, 10, received_ms=NOW_MS)
    keeper.note_arrivals()
    Outbox(db_path, "file").mark_delivered(10)
    wall[0] += 6 * 3_600_000  # forward six hours: still within the window by the clock that counts
    assert keeper.prune() == (0, 0)
    wall[0] -= 12 * 3_600_000  # back six hours before they arrived
    mono[0] += 60.0
    keeper.note_arrivals()
    assert keeper.prune() == (10, 0)
