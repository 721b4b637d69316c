"""The file uplink: every stored reading as one JSON line, in one file per UTC day.

Files are ``<directory>/readings-YYYY-MM-DD.jsonl``, dated by the UTC day the *gateway
received* the reading, so a file only ever grows at its end and is complete once its day is
over (a late reading measured yesterday lands in today's file, with its own ``time``).

Each line::

    {"id": 42, "gateway": "gw-1", "site": "kec-a", "board": "aq-07", "name": "pm2_5",
     "unit": "ug/m3", "kind": "v", "value": 12.5, "time": "2025-01-02T03:04:05.250Z",
     "time_ms": 1735787045250}

``id`` is the gateway's outbox position (increasing); ``kind`` is the SenML value field
(``vd`` values are base64url). Delivery is at-least-once: lines are flushed and fsynced
*before* the outbox cursor moves, so after a crash a line may appear twice but is never
missing. Consumers deduplicate on ``id`` (per gateway) or on (board, name, time_ms).

It runs in the uplinks process (:mod:`gateway.uplinks`), reading the outbox on its own
connection, so its work never competes with the CoAP server for the interpreter lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from gateway.senml import Value, ValueKind, value_to_json
from gateway.store import Outbox, OutboxRow

log = logging.getLogger(__name__)

UPLINK_NAME = "file"
_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 30.0
_QUOTE_CACHE_SIZE = 65536
_DAY_MS = 86_400_000


def iso_utc(time_ms: int) -> str:
    """``2025-01-02T03:04:05.250Z`` for a Unix time in milliseconds."""
    seconds, millis = divmod(time_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def utc_day(time_ms: int) -> str:
    """``YYYY-MM-DD`` of a Unix time in milliseconds, in UTC."""
    return time.strftime("%Y-%m-%d", time.gmtime(time_ms // 1000))


def _json_value(kind: ValueKind, value: Value) -> str:
    if kind == "vb":
        return "true" if value else "false"
    if type(value) is float or type(value) is int:
        return repr(value)  # what json.dumps writes for finite numbers
    return json.dumps(value_to_json(kind, value))


class FileUplink:
    """Appends the outbox to JSON Lines files; :meth:`run` delivers until told to stop."""

    def __init__(
        self,
        outbox: Outbox,
        directory: Path,
        *,
        gateway_id: str,
        site: str,
        batch_size: int = 1000,
        linger_s: float = 0.0,
    ) -> None:
        self.outbox = outbox
        self.directory = directory
        self.gateway_id = gateway_id
        self.site = site
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.errors = 0
        self._origin = f'"gateway":{json.dumps(gateway_id)},"site":{json.dumps(site)}'
        self._quoted: dict[str | None, str] = {}
        self._iso_second = -1
        self._iso_prefix = ""

    def line(self, row: OutboxRow) -> str:
        """One reading as its JSON line (without the newline).

        Built by hand rather than with ``json.dumps(dict)``: this runs for every reading,
        and the repeated strings (board, name, unit) are escaped once and cached.
        """
        quote = self._quoted
        board = quote.get(row.board_id) or self._quote(row.board_id)
        name = quote.get(row.name) or self._quote(row.name)
        unit = quote.get(row.unit) or self._quote(row.unit)
        return (
            f'{{"id":{row.id},{self._origin},"board":{board},"name":{name},"unit":{unit},'
            f'"kind":"{row.kind}","value":{_json_value(row.kind, row.value)},'
            f'"time":"{self._iso(row.time_ms)}","time_ms":{row.time_ms}}}'
        )

    def _quote(self, text: str | None) -> str:
        quoted = json.dumps(text)
        if len(self._quoted) < _QUOTE_CACHE_SIZE:
            self._quoted[text] = quoted
        return quoted

    def _iso(self, time_ms: int) -> str:
        seconds, millis = divmod(time_ms, 1000)
        if seconds != self._iso_second:
            self._iso_second = seconds
            self._iso_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{self._iso_prefix}.{millis:03d}Z"

    def path_for(self, row: OutboxRow) -> Path:
        """The file a row goes to (by UTC day of receipt)."""
        return self.path_for_day(row.received_ms // _DAY_MS)

    def path_for_day(self, day: int) -> Path:
        """The file of a UTC day, counted in days since the Unix epoch."""
        return self.directory / f"readings-{utc_day(day * _DAY_MS)}.jsonl"

    def append(self, rows: list[OutboxRow]) -> None:
        """Write rows to their files and make them durable."""
        self.directory.mkdir(parents=True, exist_ok=True)
        by_day: dict[int, list[str]] = defaultdict(list)
        line = self.line
        for row in rows:
            by_day[row.received_ms // _DAY_MS].append(line(row))
        for day, lines in by_day.items():
            path = self.path_for_day(day)
            created = not path.exists()
            with path.open("a", encoding="utf-8") as fp:
                fp.write("\n".join(lines) + "\n")
                fp.flush()
                os.fsync(fp.fileno())
            if created:  # the new name must survive a power cut too
                dir_fd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)

    def deliver_once(self) -> int:
        """Deliver one batch of undelivered rows, if any; returns how many."""
        rows = self.outbox.fetch(self.batch_size)
        if rows:
            self.append(rows)
            self.outbox.mark_delivered(rows[-1].id)
        return len(rows)

    def run(self, stop: Callable[[], bool]) -> None:
        """Deliver until ``stop()`` says so, polling the outbox for new rows; retry on errors.

        One process at a time appends to the directory (an exclusive lock on ``.lock``), so
        an uplink left over from a killed gateway finishes before a new one starts.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("w") as lock:
            while not _try_lock(lock.fileno()):
                if stop():
                    return
                time.sleep(0.05)
            self._deliver_until(stop)

    def _deliver_until(self, stop: Callable[[], bool]) -> None:
        delay = _RETRY_MIN_S
        while not stop():
            if not self.outbox.wait_for_rows(_RETRY_MAX_S, stop=stop):
                continue
            if self.linger_s and self.outbox.backlog < self.batch_size:
                # Let a few commits gather: fewer, larger appends cost less per reading.
                time.sleep(self.linger_s)
            try:
                self.deliver_once()
            except (OSError, sqlite3.Error, ValueError) as exc:
                self.errors += 1
                log.warning("file uplink: %s; retrying in %.1f s", exc, delay)
                _sleep_unless(stop, delay)
                delay = min(delay * 2, _RETRY_MAX_S)
            else:
                delay = _RETRY_MIN_S


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _sleep_unless(stop: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(0.05)
