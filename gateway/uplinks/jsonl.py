"""The file uplink: every stored reading as one JSON line, in one file per UTC day.

Files are ``<directory>/readings-YYYY-MM-DD.jsonl``, dated by the UTC day the *gateway
received* the reading, so a file only ever grows at its end and is complete once its day is
over (a late reading measured yesterday lands in today's file, with its own ``time``).

Each line::

    {"id": 42, "gateway": "gw-1", "site": "kec-a", "board": "aq-07", "name": "pm2_5",
     "unit": "ug/m3", "kind": "v", "value": 12.5, "time": "2025-01-02T03:04:05.250Z",
     "time_ms": 1735787045250}

``id`` is the gateway's outbox position (increasing); ``kind`` is the SenML value field
(``vd`` values are base64url). Lines are flushed and fsynced *before* the outbox cursor
moves (:class:`~gateway.uplinks.delivery.Delivery` drives :class:`JsonLinesSender`), so no
acknowledged reading is ever missing.

Every file stays strictly line-valid, each reading in it once: before this process first
appends to a file (and again after any failed append, a full disk say), it cuts the file
back to its last complete line whose ``id`` is at or below the cursor. So a line torn by a
crash or by ENOSPC, and lines written but not yet counted, are removed and written again
whole. Each append goes to one file, so the cursor never moves past a line it cannot see.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Final

from gateway.codec.senml import Value, ValueKind, value_to_json
from gateway.store.outbox import Outbox, OutboxRow
from gateway.uplinks.delivery import Sender

log = logging.getLogger(__name__)

UPLINK_NAME = "file"
_QUOTE_CACHE_SIZE = 65536
_DAY_MS = 86_400_000
#: How much of a file's end is read at a time when it is checked before appending.
_TAIL_CHUNK: Final = 64 * 1024
_LINE_ID = re.compile(rb'^\{"id":(\d+),')


def utc_day(time_ms: int) -> str:
    """``YYYY-MM-DD`` of a Unix time in milliseconds, in UTC."""
    return time.strftime("%Y-%m-%d", time.gmtime(time_ms // 1000))


def _json_value(kind: ValueKind, value: Value) -> str:
    if kind == "vb":
        return "true" if value else "false"
    if type(value) is float or type(value) is int:
        return repr(value)  # what json.dumps writes for finite numbers
    return json.dumps(value_to_json(kind, value))


class JsonLinesSender(Sender[OutboxRow]):
    """Appends readings to JSON Lines files, one fsynced append per file and round."""

    def __init__(
        self,
        outbox: Outbox,
        directory: Path,
        *,
        gateway_id: str,
        site: str,
    ) -> None:
        self.outbox = outbox
        self.directory = directory
        self.gateway_id = gateway_id
        self.site = site
        self._origin = f'"gateway":{json.dumps(gateway_id)},"site":{json.dumps(site)}'
        self._quoted: dict[str | None, str] = {}
        self._iso_second = -1
        self._iso_prefix = ""
        #: Lines sent but not yet written: (UTC day of receipt, outbox id, line).
        self._pending: list[tuple[int, int, str]] = []
        #: Files checked (cut back to the cursor) since the last open.
        self._checked: set[Path] = set()
        #: Lines removed by those checks: torn, or written but never counted as delivered.
        self.repaired_lines = 0

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

    # -- Sender ---------------------------------------------------------------------------

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pending.clear()
        self._checked.clear()

    def send(self, item: OutboxRow) -> None:
        self._pending.append((item.received_ms // _DAY_MS, item.id, self.line(item)))

    def confirmed(self, timeout_s: float) -> list[int]:
        """Write the longest run of pending lines bound for one file, fsynced; their ids."""
        if not self._pending:
            return []
        day = self._pending[0][0]
        run = 1
        while run < len(self._pending) and self._pending[run][0] == day:
            run += 1
        lines = self._pending[:run]
        self._append(self.path_for_day(day), "".join(line + "\n" for _, _, line in lines))
        del self._pending[:run]
        return [row_id for _, row_id, _ in lines]

    def close(self, *, graceful: bool) -> None:
        self._pending.clear()

    # -- files ----------------------------------------------------------------------------

    def _append(self, path: Path, text: str) -> None:
        if path not in self._checked:
            self.repaired_lines += cut_back(path, self.outbox.delivered())
            self._checked.add(path)
        created = not path.exists()
        with path.open("a", encoding="utf-8") as fp:
            fp.write(text)
            fp.flush()
            os.fsync(fp.fileno())
        if created:  # the new name must survive a power cut too
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def cut_back(path: Path, delivered_id: int) -> int:
    """Cut ``path`` back to its last complete line with an ``id`` at most ``delivered_id``.

    Lines in one file are in outbox order, so only a tail goes: a torn last line, garbage,
    and whole lines of readings not yet counted as delivered. Returns how many lines (torn or
    whole) were removed; the file is fsynced if it changed.
    """
    try:
        fp = path.open("r+b")
    except FileNotFoundError:
        return 0
    with fp:
        size = fp.seek(0, os.SEEK_END)
        end = size  # the kept part is the file up to here
        buf, buf_start = b"", size  # buf holds the file from buf_start to end
        removed = 0
        while end > 0:
            # Read back until buf holds the whole last line, with the newline before it.
            while buf_start > 0 and b"\n" not in buf[:-1]:
                start = max(buf_start - _TAIL_CHUNK, 0)
                fp.seek(start)
                buf = fp.read(buf_start - start) + buf
                buf_start = start
            cut = buf[:-1].rfind(b"\n") + 1  # where the last line starts in buf
            line = buf[cut:]
            match = _LINE_ID.match(line) if line.endswith(b"\n") else None
            if match is not None and int(match.group(1)) <= delivered_id:
                break
            buf = buf[:cut]
            end = buf_start + cut
            removed += 1
        if end != size:
            fp.truncate(end)
            fp.flush()
            os.fsync(fp.fileno())
            log.warning("file uplink: cut %s back by %d line(s) to its cursor", path, removed)
        return removed
