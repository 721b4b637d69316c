"""The JSON Lines file uplink: strictly line-valid files, each reading once, whatever breaks.

It runs the same delivery loop as every uplink (:class:`gateway.uplinks.delivery.Delivery`);
what is its own is the file: a torn append (a crash, a full disk) is cut back before the next
one, and lines written but not yet counted as delivered are not written twice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store.outbox import Outbox, OutboxRow
from gateway.store.schema import prepare
from gateway.uplinks.delivery import Backoff, Delivery
from gateway.uplinks.jsonl import JsonLinesSender, cut_back
from tests.batches.test_batcher import NOW_MS, fill

DAY_MS = 86_400_000


def lines_of(directory: Path) -> list[dict[str, Any]]:
    """Every line of every file, parsed strictly (a torn or glued line fails here)."""
    parsed: list[dict[str, Any]] = []
    for path in sorted(directory.glob("readings-*.jsonl")):
        text = path.read_text()
        assert text == "" or text.endswith("\n"), f"{path.name} ends in a torn line"
        parsed.extend(json.loads(line) for line in text.splitlines())
    return parsed


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.db"
    prepare(path)
    return path


def uplink(
    db_path: Path, directory: Path, window: int = 500
) -> tuple[Delivery[OutboxRow], JsonLinesSender]:
    outbox = Outbox(db_path, "file")
    sender = JsonLinesSender(outbox, directory, gateway_id="gw-1", site="kec-a")
    delivery: Delivery[OutboxRow] = Delivery(
        "file", outbox, sender, window=window, backoff=Backoff(0.02, 0.1)
    )
    return delivery, sender


def run_until(delivery: Delivery[OutboxRow], done: Callable[[], bool], within: float = 20) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=delivery.run, args=(stop.is_set,), daemon=True)
    thread.start()
    deadline = time.monotonic() + within
    try:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(10)


def test_cut_back_removes_a_torn_line_and_lines_past_the_cursor(tmp_path: Path) -> None:
    path = tmp_path / "readings-2026-01-01.jsonl"
    good = "".join(f'{{"id":{i},"gateway":"gw-1"}}\n' for i in range(1, 6))
    path.write_text(good + '{"id":6,"gatew')
    assert cut_back(path, 4) == 2  # the torn line 6, and line 5 not yet counted
    assert path.read_text() == good.rsplit('{"id":5', 1)[0]
    assert cut_back(path, 4) == 0


def test_cut_back_removes_lines_glued_by_a_full_disk(tmp_path: Path) -> None:
    """What a full disk once left: a cut line with the retried append glued to it."""
    path = tmp_path / "readings-2026-01-01.jsonl"
    good = '{"id":27486,"a":1}\n{"id":27487,"a":1}\n'
    path.write_text(good + '{"id":2749{"id":27488,"a":1}\n{"id":27489,"a":1}\n')
    assert cut_back(path, 27487) == 2
    assert path.read_text() == good


def test_each_reading_once_across_a_day_boundary_and_a_restart(
    db_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    midnight = NOW_MS - NOW_MS % DAY_MS + DAY_MS
    fill(db_path, 300, received_ms=midnight - 1)
    fill(db_path, 300, first=300, received_ms=midnight)
    delivery, _ = uplink(db_path, out)
    run_until(delivery, lambda: delivery.delivered == 600)
    assert len(list(out.glob("*.jsonl"))) == 2
    fill(db_path, 50, first=600, received_ms=midnight)
    restarted, sender = uplink(db_path, out)
    run_until(restarted, lambda: restarted.delivered == 650)
    assert sorted(line["id"] for line in lines_of(out)) == list(range(1, 651))
    assert sender.repaired_lines == 0


def test_lines_written_but_not_counted_are_not_written_twice(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fill(db_path, 100)
    first, _ = uplink(db_path, out)
    run_until(first, lambda: first.delivered == 100)
    # The cursor update was lost (a power cut before it reached the disk): it says 60.
    db = Outbox(db_path, "file")
    db._db.execute("UPDATE uplink_progress SET delivered_id = 60")
    again, sender = uplink(db_path, out)
    run_until(again, lambda: again.delivered == 100)
    assert [line["id"] for line in lines_of(out)] == list(range(1, 101))
    assert sender.repaired_lines == 40


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 KiB tmpfs: room for a few hundred lines, then ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_mid_append_leaves_the_file_line_valid_and_loses_nothing(
    db_path: Path, small_disk: Path
) -> None:
    fill(db_path, 1500)  # about 200 KB of lines: far more than the disk holds
    delivery, sender = uplink(db_path, small_disk, window=50)
    run_until(delivery, lambda: delivery.stats.failures >= 3, within=10)
    assert delivery.stats.failures >= 3, "the disk never filled"
    assert 0 < delivery.delivered < 1500
    # The operator makes room; the uplink goes on by itself.
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    run_until(delivery, lambda: delivery.delivered == 1500)
    assert delivery.delivered == 1500
    ids = [line["id"] for line in lines_of(small_disk)]
    assert ids == list(range(1, 1501)), "a reading repeated or missing"
    assert sender.repaired_lines >= 1, "no torn append was ever cut back"
