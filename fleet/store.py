"""fleet.db: what the fleet manager knows, in one SQLite file. Every SQL statement of the
fleet lives in this module, behind :class:`FleetStore`'s typed methods, so a server database
could replace it (for a province) without touching the callers.

Tables (``<fleet dir>/fleet.db``)::

    sites              each site, and its water boards' flood thresholds
    gateways           each gateway, its public key, its last verified state (health part)
    boards, board_tags each enrolled board: kind, site, gateway, release, OTA, health; tags
    releases           the release files rollouts send (seq, version, hw, the file's bytes)
    rollouts,          rollouts and each board's wave and status in one (stored here; the
      rollout_boards     logic is fleet.rollouts')
    health_history     boards' health reports over time (pruned: age, rows per board)
    reading_summaries  running statistics per board and quantity: the health rules' baseline
    reading_history    readings per board and quantity in 15-minute buckets (count, mean,
                         min, max), by the readings' own time; pruned with health_history
    reading_totals     readings per 15-minute bucket, fleet-wide (what "today" sums)
    alerts             raised by the health rules; one open alert per (rule, subject)
    desired_docs       the last signed desired document per gateway: its seq only grows
    settings           JSON values by key (health rule thresholds, ...)
    audit, audit_head  the operators' hash-chained audit log (fleet.audit) and its head

**Two processes.** ``simpul fleet serve`` and the CLI commands share the file: WAL mode,
``synchronous=FULL``, a busy timeout, every write in one ``BEGIN IMMEDIATE`` transaction
(so a read-modify-write, like a Welford update or an audit append, is never interleaved),
and reads that take several statements in one read transaction (one snapshot).

**Versions.** ``PRAGMA user_version`` is the schema version: a new file is created at
:data:`SCHEMA_VERSION`, an older one migrated forward one step per version in one transaction
each, and a file from a newer release refused (as ``gateway/store/schema.py`` does).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from fleet.audit import GENESIS, AuditEntry, AuditHead, entry_digest
from fleet.errors import AlreadyExists, Conflict, FleetDbError, NotFound
from fleet.records import (
    Alert,
    Board,
    BoardReport,
    DesiredDoc,
    FleetStatus,
    Gateway,
    HealthSample,
    Json,
    ReadingBucket,
    ReadingSummary,
    ReleaseInfo,
    Rollout,
    RolloutBoard,
    Site,
)
from gateway.oscore.keys import KeyMaterial

#: The version a file is created at, or migrated to.
SCHEMA_VERSION: Final = 3
#: The file's name in the fleet directory.
DB_NAME: Final = "fleet.db"
#: How long a writer waits for the other process's transaction.
_BUSY_TIMEOUT_MS: Final = 10_000
#: Health reports kept per board by default (the oldest go first).
DEFAULT_HISTORY_PER_BOARD: Final = 2000
#: The width of a reading history bucket (ms): 96 a day, enough for a day's sparkline.
READING_BUCKET_MS: Final = 15 * 60 * 1000
#: Rollout states in which a rollout still acts.
ACTIVE_ROLLOUT_STATES: Final = ("running", "paused")

_SCHEMA_V1: Final = """
CREATE TABLE sites (
    site_id      TEXT PRIMARY KEY,
    name         TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    flood_levels TEXT                   -- JSON {level name: metres}, NULL: none set
);
CREATE TABLE gateways (
    gateway_id    TEXT PRIMARY KEY,
    site_id       TEXT    NOT NULL REFERENCES sites (site_id),
    public_key    BLOB    NOT NULL CHECK (length(public_key) = 32),  -- raw Ed25519
    added_ms      INTEGER NOT NULL,
    last_state_ms INTEGER,              -- the last verified state's "at"
    state_seq     INTEGER,              -- and its "seq": older ones are ignored
    last_state    TEXT,                 -- and its "health" part, JSON
    retired_ms    INTEGER
);
CREATE TABLE boards (
    board_id     TEXT PRIMARY KEY,
    kind         TEXT    NOT NULL,
    site_id      TEXT    NOT NULL REFERENCES sites (site_id),
    gateway_id   TEXT    NOT NULL REFERENCES gateways (gateway_id),
    enrolled_ms  INTEGER NOT NULL,
    retired_ms   INTEGER,
    running      INTEGER NOT NULL DEFAULT 0,   -- release seq it runs
    desired      INTEGER NOT NULL DEFAULT 0,   -- release it should run outside a rollout (0: none)
    ota_state    TEXT,
    ota_detail   TEXT,
    last_seen_ms INTEGER,
    last_health  TEXT,                  -- JSON, as the board reported it
    health_ms    INTEGER
);
CREATE INDEX boards_by_gateway ON boards (gateway_id);
CREATE TABLE board_tags (
    board_id TEXT NOT NULL REFERENCES boards (board_id),
    tag      TEXT NOT NULL,
    PRIMARY KEY (board_id, tag)
) WITHOUT ROWID;
CREATE INDEX board_tags_by_tag ON board_tags (tag);
CREATE TABLE releases (
    seq      INTEGER PRIMARY KEY,
    version  TEXT    NOT NULL,
    hw       TEXT    NOT NULL,
    added_ms INTEGER NOT NULL,
    data     BLOB    NOT NULL           -- the release file, as simpul release build wrote it
);
CREATE TABLE rollouts (
    id         TEXT PRIMARY KEY,
    release    INTEGER NOT NULL,
    revert     INTEGER,
    previous   TEXT    NOT NULL,        -- JSON {board id: release seq before}
    state      TEXT    NOT NULL,
    reason     TEXT,
    target     TEXT    NOT NULL,        -- JSON
    plan       TEXT    NOT NULL,        -- JSON
    limits     TEXT    NOT NULL,        -- JSON
    "window"   TEXT,                    -- JSON [start, end) UTC minutes, or NULL
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    operator   TEXT    NOT NULL
);
CREATE TABLE rollout_boards (
    rollout_id TEXT    NOT NULL REFERENCES rollouts (id),
    board_id   TEXT    NOT NULL,
    wave       INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, board_id)
) WITHOUT ROWID;
CREATE TABLE health_history (
    board_id TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL,
    health   TEXT    NOT NULL           -- JSON
);
CREATE INDEX health_history_by_board ON health_history (board_id, at_ms);
CREATE INDEX health_history_by_time ON health_history (at_ms);
CREATE TABLE reading_summaries (
    board_id   TEXT    NOT NULL,
    quantity   TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    mean       REAL    NOT NULL,
    m2         REAL    NOT NULL,        -- sum of squared differences from the mean
    min        REAL    NOT NULL,
    max        REAL    NOT NULL,
    last_value REAL    NOT NULL,        -- the newest reading by its time
    last_ms    INTEGER NOT NULL,
    PRIMARY KEY (board_id, quantity)
) WITHOUT ROWID;
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    rule         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,      -- a board or gateway id
    subject_kind TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'cleared')),
    raised_ms    INTEGER NOT NULL,
    cleared_ms   INTEGER,
    acked_ms     INTEGER,
    acked_by     TEXT,
    note         TEXT,
    detail       TEXT    NOT NULL       -- JSON
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, subject) WHERE state = 'open';
CREATE INDEX alerts_by_raised ON alerts (raised_ms);
CREATE TABLE desired_docs (
    gateway_id   TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL,
    doc          BLOB    NOT NULL,      -- the operator-signed envelope, as published
    published_ms INTEGER NOT NULL
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                 -- JSON
);
CREATE TABLE audit (
    seq      INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    operator TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    detail   TEXT    NOT NULL,          -- JSON
    result   TEXT    NOT NULL,          -- "ok" or the error
    prev     BLOB    NOT NULL,
    digest   BLOB    NOT NULL
);
CREATE TABLE audit_head (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    count  INTEGER NOT NULL,
    digest BLOB    NOT NULL
);
"""

_SCHEMA_V2_ADDED: Final = """
CREATE TABLE reading_history (
    board_id  TEXT    NOT NULL,
    quantity  TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,         -- the bucket's start, a multiple of READING_BUCKET_MS
    count     INTEGER NOT NULL,
    mean      REAL    NOT NULL,
    min       REAL    NOT NULL,
    max       REAL    NOT NULL,
    PRIMARY KEY (board_id, quantity, bucket_ms)
) WITHOUT ROWID;
CREATE INDEX reading_history_by_time ON reading_history (bucket_ms);
CREATE TABLE reading_totals (
    bucket_ms INTEGER PRIMARY KEY,
    count     INTEGER NOT NULL
);
"""


_SCHEMA_V3_ADDED: Final = """
ALTER TABLE gateways ADD COLUMN seal_key BLOB  -- raw X25519 (gateway.oscore.seal), from its state
    CHECK (seal_key IS NULL OR length(seal_key) = 32);
CREATE TABLE board_keys (
    board_id   TEXT    PRIMARY KEY REFERENCES boards (board_id),
    sid        BLOB    NOT NULL UNIQUE,  -- the board's OSCORE Sender ID, never changed
    material   TEXT    NOT NULL,         -- the board file's JSON (gateway.oscore.keys)
    generation INTEGER NOT NULL,         -- 1 when enrolled, one more at each rekey
    changed_ms INTEGER NOT NULL,
    sealed_to  BLOB,                     -- the gateway seal key ``sealed`` was made for
    sealed     BLOB                      -- the material sealed to it, as desired docs carry it
)
"""


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    """Boards' OSCORE keys and gateways' seal keys: none known at first (boards enrolled
    before this version get keys by ``simpul fleet boards rekey``)."""
    _execute_script(db, _SCHEMA_V3_ADDED)


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Reading history: empty at first (version 1 kept only running statistics)."""
    _execute_script(db, _SCHEMA_V2_ADDED)


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    # Statement by statement: executescript would commit the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


#: ``_MIGRATIONS[v]`` takes a file from version ``v`` to ``v + 1``.
_MIGRATIONS: Final[dict[int, Callable[[sqlite3.Connection], None]]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


def reading_bucket(time_ms: int) -> int:
    """The start of the history bucket a reading taken at ``time_ms`` falls in."""
    return time_ms - time_ms % READING_BUCKET_MS


def now_ms() -> int:
    """Wall-clock time as integer Unix milliseconds."""
    return time.time_ns() // 1_000_000


def _dumps(value: Json) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


_SITE: Final = "site_id, name, created_ms, flood_levels"
_GATEWAY: Final = (
    "gateway_id, site_id, public_key, added_ms, last_state_ms, state_seq, last_state, retired_ms,"
    " seal_key"
)
_BOARD: Final = (
    "board_id, kind, site_id, gateway_id, enrolled_ms, retired_ms, running, ota_state,"
    " ota_detail, last_seen_ms, last_health, health_ms, desired"
)
_ROLLOUT: Final = (
    'id, release, revert, previous, state, reason, target, plan, limits, "window",'
    " created_ms, updated_ms, operator"
)
_SUMMARY: Final = "board_id, quantity, count, mean, m2, min, max, last_value, last_ms"
_ALERT: Final = (
    "id, rule, subject, subject_kind, state, raised_ms, cleared_ms, acked_ms, acked_by, note,"
    " detail"
)
_AUDIT: Final = "seq, at_ms, operator, action, target, detail, result, prev, digest"


def _site(row: Any) -> Site:
    site_id, name, created_ms, flood = row
    return Site(str(site_id), str(name), int(created_ms), _loads(flood))


def _gateway(row: Any) -> Gateway:
    gw, site, key, added, state_ms, seq, state, retired, seal_key = row
    return Gateway(
        str(gw), str(site), bytes(key), int(added), _int(state_ms), _int(seq), _loads(state),
        _int(retired), None if seal_key is None else bytes(seal_key),
    )  # fmt: skip


def _summary(row: Any) -> ReadingSummary:
    board, quantity, count, mean, m2, low, high, last_value, last_ms = row
    return ReadingSummary(
        str(board), str(quantity), int(count), float(mean), float(m2), float(low), float(high),
        float(last_value), int(last_ms),
    )  # fmt: skip


def _alert(row: Any) -> Alert:
    aid, rule, subject, kind, state, raised, cleared, acked, by, note, detail = row
    return Alert(
        int(aid), str(rule), str(subject), str(kind), str(state), int(raised), _int(cleared),
        _int(acked), _str(by), _str(note), json.loads(detail),
    )  # fmt: skip


def _rollout(row: Any) -> Rollout:
    rid, release, revert, previous, state, reason, target, plan, limits, window = row[:10]
    created, updated, operator = row[10:]
    return Rollout(
        str(rid), int(release), _int(revert), json.loads(previous), str(state), _str(reason),
        json.loads(target), json.loads(plan), json.loads(limits), _loads(window), int(created),
        int(updated), str(operator),
    )  # fmt: skip


def _audit(row: Any) -> AuditEntry:
    seq, at, operator, action, target, detail, result, prev, digest = row
    return AuditEntry(
        int(seq), int(at), str(operator), str(action), str(target), json.loads(detail),
        str(result), bytes(prev), bytes(digest),
    )  # fmt: skip


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), foreign keys on."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        raise FleetDbError(f"cannot open {path}: {exc}") from None
    return db


def prepare(path: Path) -> int:
    """Create fleet.db, or migrate it forward; switch it to WAL. Returns the version it had
    (0: it was new). Raises :class:`FleetDbError` for a file SQLite cannot use, or one a newer
    release wrote, leaving it untouched."""
    db = connect(path)
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise FleetDbError(
                f"{path} has schema version {version}, newer than this release's"
                f" {SCHEMA_VERSION}; upgrade simpul (the file was left untouched)"
            )
        db.execute("PRAGMA journal_mode = WAL")
        with _transaction(db):
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version == 0:
                tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
                if tables.fetchone()[0]:
                    raise FleetDbError(f"{path} is an SQLite file but not a fleet database")
                _execute_script(db, _SCHEMA_V1)
                for step in range(1, SCHEMA_VERSION):
                    _MIGRATIONS[step](db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return 0
        for step in range(version, SCHEMA_VERSION):
            with _transaction(db):
                _MIGRATIONS[step](db)
                db.execute(f"PRAGMA user_version = {step + 1}")
        return int(version)
    except sqlite3.DatabaseError as exc:
        raise FleetDbError(f"{path}: SQLite cannot use this file ({exc})") from None
    finally:
        db.close()


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    db.execute(begin)
    try:
        yield
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class FleetStore:
    """fleet.db on a connection of its own; one per process (or thread).

    ``FleetStore(path)`` creates or migrates the file first; with ``create=False`` a missing
    file is an error (the CLI's commands other than ``init``). Each method is one
    transaction; :meth:`transaction` groups several into one (a change and its audit entry).
    """

    def __init__(
        self,
        path: Path,
        *,
        create: bool = True,
        history_per_board: int = DEFAULT_HISTORY_PER_BOARD,
    ) -> None:
        if not create and not path.exists():
            raise FleetDbError(f"no fleet database at {path}: run 'simpul fleet init' first")
        self.path = path
        self.created = prepare(path) == 0
        self.history_per_board = history_per_board
        self._db = connect(path)
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FleetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction around every call inside; nests."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            with _transaction(self._db):
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
        except sqlite3.OperationalError as exc:
            raise FleetDbError(f"{self.path}: {exc}") from None

    @contextlib.contextmanager
    def reads(self) -> Iterator[None]:
        """Every read inside sees fleet.db at one moment (WAL: writers are not held up).
        Nests, and inside a write transaction is that one."""
        if self._depth or self._db.in_transaction:
            yield
            return
        with _transaction(self._db, "BEGIN"):
            yield

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._db.execute(sql, params).fetchall()

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._one(f"SELECT count(*) FROM {sql}", params)[0])

    def schema_version(self) -> int:
        return int(self._one("PRAGMA user_version")[0])

    def status(self) -> FleetStatus:
        with self.reads():
            head = self.audit_head()
            return FleetStatus(
                schema_version=self.schema_version(),
                sites=self._count("sites"),
                gateways=self._count("gateways WHERE retired_ms IS NULL"),
                boards=self._count("boards WHERE retired_ms IS NULL"),
                retired_boards=self._count("boards WHERE retired_ms IS NOT NULL"),
                releases=self._count("releases"),
                active_rollouts=self._count(
                    "rollouts WHERE state IN (?, ?)", ACTIVE_ROLLOUT_STATES
                ),
                open_alerts=self._count("alerts WHERE state = 'open'"),
                audit_entries=0 if head is None else head.count,
            )

    # --- sites ------------------------------------------------------------------------------

    def add_site(
        self,
        site_id: str,
        name: str,
        *,
        flood_levels: Mapping[str, float] | None = None,
        at_ms: int | None = None,
    ) -> Site:
        site = Site(site_id, name, now_ms() if at_ms is None else at_ms, flood_levels)
        with self.transaction():
            if self.site(site_id) is not None:
                raise AlreadyExists(f"site {site_id!r} already exists")
            self._db.execute(
                f"INSERT INTO sites ({_SITE}) VALUES (?, ?, ?, ?)",
                (site_id, name, site.created_ms, _flood(flood_levels)),
            )
        return site

    def site(self, site_id: str) -> Site | None:
        row = self._one(f"SELECT {_SITE} FROM sites WHERE site_id = ?", (site_id,))
        return None if row is None else _site(row)

    def sites(self) -> list[Site]:
        return [_site(r) for r in self._all(f"SELECT {_SITE} FROM sites ORDER BY site_id")]

    def set_flood_levels(self, site_id: str, levels: Mapping[str, float] | None) -> Site:
        with self.transaction():
            self._require_site(site_id)
            self._db.execute(
                "UPDATE sites SET flood_levels = ? WHERE site_id = ?",
                (_flood(levels), site_id),
            )
            return self._require_site(site_id)

    def _require_site(self, site_id: str) -> Site:
        site = self.site(site_id)
        if site is None:
            raise NotFound(f"unknown site {site_id!r}")
        return site

    # --- gateways ---------------------------------------------------------------------------

    def add_gateway(
        self, gateway_id: str, site_id: str, public_key: bytes, *, at_ms: int | None = None
    ) -> Gateway:
        if len(public_key) != 32:
            raise ValueError("a gateway's public key is 32 raw Ed25519 bytes")
        added = now_ms() if at_ms is None else at_ms
        with self.transaction():
            self._require_site(site_id)
            if self.gateway(gateway_id) is not None:
                raise AlreadyExists(f"gateway {gateway_id!r} already exists")
            self._db.execute(
                "INSERT INTO gateways (gateway_id, site_id, public_key, added_ms)"
                " VALUES (?, ?, ?, ?)",
                (gateway_id, site_id, public_key, added),
            )
        return Gateway(gateway_id, site_id, public_key, added, None, None, None, None)

    def gateway(self, gateway_id: str) -> Gateway | None:
        row = self._one(f"SELECT {_GATEWAY} FROM gateways WHERE gateway_id = ?", (gateway_id,))
        return None if row is None else _gateway(row)

    def gateways(self, *, site_id: str | None = None) -> list[Gateway]:
        rows = self._all(
            f"SELECT {_GATEWAY} FROM gateways WHERE ?1 IS NULL OR site_id = ?1 ORDER BY gateway_id",
            (site_id,),
        )
        return [_gateway(r) for r in rows]

    def retire_gateway(self, gateway_id: str, *, at_ms: int | None = None) -> Gateway:
        with self.transaction():
            gateway = self._require_gateway(gateway_id)
            if gateway.retired_ms is not None:
                raise Conflict(f"gateway {gateway_id!r} is already retired")
            self._db.execute(
                "UPDATE gateways SET retired_ms = ? WHERE gateway_id = ?",
                (now_ms() if at_ms is None else at_ms, gateway_id),
            )
            return self._require_gateway(gateway_id)

    def _require_gateway(self, gateway_id: str) -> Gateway:
        gateway = self.gateway(gateway_id)
        if gateway is None:
            raise NotFound(f"unknown gateway {gateway_id!r}")
        return gateway

    def record_state(
        self,
        gateway_id: str,
        *,
        seq: int,
        at_ms: int,
        health: Mapping[str, Json],
        boards: Iterable[BoardReport] = (),
        seal_key: bytes | None = None,
    ) -> list[str]:
        """A gateway's verified ``state``: its health, its seal key (kept when None), and each
        enrolled board's report (a new health report also goes to the history). A state whose
        ``seq`` is not above the last one recorded changes nothing. Returns the ids of boards
        it reported that are not enrolled on this gateway (ignored)."""
        with self.transaction():
            gateway = self._require_gateway(gateway_id)
            if gateway.state_seq is not None and seq <= gateway.state_seq:
                return []
            self._db.execute(
                "UPDATE gateways SET last_state_ms = ?, state_seq = ?, last_state = ?,"
                " seal_key = coalesce(?, seal_key) WHERE gateway_id = ?",
                (at_ms, seq, _dumps(dict(health)), seal_key, gateway_id),
            )
            strangers = []
            for report in boards:
                if not self._record_board(gateway_id, report):
                    strangers.append(report.board_id)
            return strangers

    def _record_board(self, gateway_id: str, report: BoardReport) -> bool:
        row = self._one(
            "SELECT health_ms FROM boards WHERE board_id = ? AND gateway_id = ?",
            (report.board_id, gateway_id),
        )
        if row is None:
            return False
        self._db.execute(
            "UPDATE boards SET last_seen_ms = ?, running = ?, ota_state = ?, ota_detail = ?"
            " WHERE board_id = ?",
            (
                report.last_seen_ms,
                report.running,
                report.ota_state,
                report.ota_detail,
                report.board_id,
            ),
        )
        health, health_ms = report.health, report.health_ms
        if health is not None and health_ms is not None and (row[0] is None or health_ms > row[0]):
            self._db.execute(
                "UPDATE boards SET last_health = ?, health_ms = ? WHERE board_id = ?",
                (_dumps(dict(health)), health_ms, report.board_id),
            )
            self._add_health(report.board_id, health_ms, health)
        return True

    # --- boards -----------------------------------------------------------------------------

    def enroll_board(
        self,
        board_id: str,
        *,
        kind: str,
        site_id: str,
        gateway_id: str,
        tags: Iterable[str] = (),
        at_ms: int | None = None,
    ) -> Board:
        """Enroll a board on a gateway of its site. A retired board's id is not reused."""
        with self.transaction():
            self._require_site(site_id)
            gateway = self._require_gateway(gateway_id)
            if gateway.site_id != site_id:
                raise Conflict(
                    f"gateway {gateway_id!r} is at site {gateway.site_id!r}, not {site_id!r}"
                )
            if gateway.retired_ms is not None:
                raise Conflict(f"gateway {gateway_id!r} is retired")
            existing = self.board(board_id)
            if existing is not None:
                retired = " (retired)" if existing.retired_ms is not None else ""
                raise AlreadyExists(f"board {board_id!r} is already enrolled{retired}")
            self._db.execute(
                "INSERT INTO boards (board_id, kind, site_id, gateway_id, enrolled_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (board_id, kind, site_id, gateway_id, now_ms() if at_ms is None else at_ms),
            )
            self._tag(board_id, tags)
            return self._require_board(board_id)

    def board(self, board_id: str) -> Board | None:
        found = self._boards("WHERE b.board_id = ?", (board_id,))
        return found[0] if found else None

    def boards(
        self,
        *,
        site_id: str | None = None,
        kind: str | None = None,
        tag: str | None = None,
        gateway_id: str | None = None,
        include_retired: bool = False,
    ) -> list[Board]:
        """Enrolled boards matching every filter given, by id."""
        return self._boards(
            "WHERE (?1 IS NULL OR b.site_id = ?1) AND (?2 IS NULL OR b.kind = ?2)"
            " AND (?3 IS NULL OR b.board_id IN (SELECT board_id FROM board_tags WHERE tag = ?3))"
            " AND (?4 IS NULL OR b.gateway_id = ?4) AND (?5 OR b.retired_ms IS NULL)",
            (site_id, kind, tag, gateway_id, include_retired),
        )

    def _boards(self, where: str, params: Sequence[Any]) -> list[Board]:
        with self.reads():
            rows = self._all(
                f"SELECT {', '.join('b.' + c.strip() for c in _BOARD.split(','))},"
                " (SELECT group_concat(tag, char(10)) FROM"
                "  (SELECT tag FROM board_tags t WHERE t.board_id = b.board_id ORDER BY tag))"
                f" FROM boards b {where} ORDER BY b.board_id",
                params,
            )
        return [_board(r) for r in rows]

    def _require_board(self, board_id: str) -> Board:
        board = self.board(board_id)
        if board is None:
            raise NotFound(f"unknown board {board_id!r}")
        return board

    # --- board keys (OSCORE) ------------------------------------------------------------------

    def set_board_key(
        self, board_id: str, material: KeyMaterial, *, at_ms: int | None = None
    ) -> int:
        """Keep ``material`` as the board's OSCORE key: its first (generation 1) or a new one
        for the same Sender ID (a rekey). Returns the generation. A ``sid`` another board
        has, or a change of a board's ``sid``, is a :class:`Conflict`."""
        changed = now_ms() if at_ms is None else at_ms
        body = _dumps(dict(material.to_json()))
        with self.transaction():
            self._require_board(board_id)
            row = self._one(
                "SELECT sid, generation FROM board_keys WHERE board_id = ?", (board_id,)
            )
            if row is not None:
                if bytes(row[0]) != material.sid:
                    raise Conflict(f"board {board_id!r} keeps its Sender ID {bytes(row[0]).hex()}")
                self._db.execute(
                    "UPDATE board_keys SET material = ?, generation = generation + 1,"
                    " changed_ms = ?, sealed_to = NULL, sealed = NULL WHERE board_id = ?",
                    (body, changed, board_id),
                )
                return int(row[1]) + 1
            other = self._one("SELECT board_id FROM board_keys WHERE sid = ?", (material.sid,))
            if other is not None:
                raise Conflict(f"Sender ID {material.sid.hex()} is board {other[0]!r}'s")
            self._db.execute(
                "INSERT INTO board_keys (board_id, sid, material, generation, changed_ms)"
                " VALUES (?, ?, ?, 1, ?)",
                (board_id, material.sid, body, changed),
            )
            return 1

    def board_key(self, board_id: str) -> tuple[KeyMaterial, int] | None:
        """The board's OSCORE key material and its generation; None: it has none."""
        row = self._one(
            "SELECT material, generation FROM board_keys WHERE board_id = ?", (board_id,)
        )
        return None if row is None else (KeyMaterial.from_json(json.loads(row[0])), int(row[1]))

    def sid_owner(self, sid: bytes) -> str | None:
        """The board whose Sender ID is ``sid``, if any."""
        row = self._one("SELECT board_id FROM board_keys WHERE sid = ?", (sid,))
        return None if row is None else str(row[0])

    def sealed_board_key(self, board_id: str, seal_key: bytes) -> bytes | None:
        """The board's key as last sealed to ``seal_key``; None if never (or since rekeyed)."""
        row = self._one(
            "SELECT sealed FROM board_keys WHERE board_id = ? AND sealed_to = ?",
            (board_id, seal_key),
        )
        return None if row is None or row[0] is None else bytes(row[0])

    def keep_sealed_board_key(
        self, board_id: str, generation: int, seal_key: bytes, sealed: bytes
    ) -> None:
        """Remember ``sealed`` (generation ``generation`` sealed to ``seal_key``), so that a
        desired document carries the same bytes until the key or the gateway's seal changes."""
        with self.transaction():
            self._db.execute(
                "UPDATE board_keys SET sealed_to = ?, sealed = ?"
                " WHERE board_id = ? AND generation = ?",
                (seal_key, sealed, board_id, generation),
            )

    def set_desired_releases(self, board_ids: Iterable[str], seq: int) -> None:
        """The release these boards should run outside a rollout (0: none set)."""
        with self.transaction():
            self._db.executemany(
                "UPDATE boards SET desired = ? WHERE board_id = ?",
                [(seq, board) for board in board_ids],
            )

    def tag_board(self, board_id: str, tags: Iterable[str]) -> Board:
        with self.transaction():
            self._require_board(board_id)
            self._tag(board_id, tags)
            return self._require_board(board_id)

    def untag_board(self, board_id: str, tags: Iterable[str]) -> Board:
        with self.transaction():
            self._require_board(board_id)
            self._db.executemany(
                "DELETE FROM board_tags WHERE board_id = ? AND tag = ?",
                [(board_id, tag) for tag in tags],
            )
            return self._require_board(board_id)

    def _tag(self, board_id: str, tags: Iterable[str]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO board_tags (board_id, tag) VALUES (?, ?)",
            [(board_id, tag) for tag in tags],
        )

    def retire_board(self, board_id: str, *, at_ms: int | None = None) -> Board:
        """Mark a board retired: it leaves desired documents and listings, its record stays."""
        with self.transaction():
            board = self._require_board(board_id)
            if board.retired_ms is not None:
                raise Conflict(f"board {board_id!r} is already retired")
            self._db.execute(
                "UPDATE boards SET retired_ms = ? WHERE board_id = ?",
                (now_ms() if at_ms is None else at_ms, board_id),
            )
            return self._require_board(board_id)

    # --- releases ---------------------------------------------------------------------------

    def add_release(
        self, seq: int, version: str, hw: str, data: bytes, *, at_ms: int | None = None
    ) -> ReleaseInfo:
        added = now_ms() if at_ms is None else at_ms
        with self.transaction():
            if self._one("SELECT 1 FROM releases WHERE seq = ?", (seq,)) is not None:
                raise AlreadyExists(f"release {seq} already exists")
            self._db.execute(
                "INSERT INTO releases (seq, version, hw, added_ms, data) VALUES (?, ?, ?, ?, ?)",
                (seq, version, hw, added, data),
            )
        return ReleaseInfo(seq, version, hw, added, len(data))

    def releases(self) -> list[ReleaseInfo]:
        rows = self._all(
            "SELECT seq, version, hw, added_ms, length(data) FROM releases ORDER BY seq"
        )
        return [ReleaseInfo(int(s), str(v), str(h), int(a), int(n)) for s, v, h, a, n in rows]

    def release_data(self, seq: int) -> bytes | None:
        """The release file's bytes, as published on ``simpul/releases/<seq>``."""
        row = self._one("SELECT data FROM releases WHERE seq = ?", (seq,))
        return None if row is None else bytes(row[0])

    # --- rollouts (storage only) ------------------------------------------------------------

    def put_rollout(self, rollout: Rollout) -> None:
        with self.transaction():
            if self.rollout(rollout.id) is not None:
                raise AlreadyExists(f"rollout {rollout.id!r} already exists")
            self._db.execute(
                f"INSERT INTO rollouts ({_ROLLOUT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rollout.id,
                    rollout.release,
                    rollout.revert,
                    _dumps(dict(rollout.previous)),
                    rollout.state,
                    rollout.reason,
                    _dumps(rollout.target),
                    _dumps(rollout.plan),
                    _dumps(dict(rollout.limits)),
                    None if rollout.window is None else _dumps(rollout.window),
                    rollout.created_ms,
                    rollout.updated_ms,
                    rollout.operator,
                ),
            )

    def rollout(self, rollout_id: str) -> Rollout | None:
        row = self._one(f"SELECT {_ROLLOUT} FROM rollouts WHERE id = ?", (rollout_id,))
        return None if row is None else _rollout(row)

    def rollouts(self, *, states: Sequence[str] | None = None) -> list[Rollout]:
        """Rollouts (in any of ``states``, if given), oldest first."""
        rows = self._all(f"SELECT {_ROLLOUT} FROM rollouts ORDER BY created_ms, id")
        found = [_rollout(r) for r in rows]
        return found if states is None else [r for r in found if r.state in states]

    def update_rollout(
        self,
        rollout_id: str,
        *,
        state: str | None = None,
        reason: str | None = None,
        revert: int | None = None,
        previous: Mapping[str, int] | None = None,
        plan: Json | None = None,
        window: Json | None = None,
        at_ms: int | None = None,
    ) -> Rollout:
        """Change the fields given (``reason`` is set whenever ``state`` is)."""
        changes: dict[str, Any] = {}
        if state is not None:
            changes["state"] = state
            changes["reason"] = reason
        elif reason is not None:
            changes["reason"] = reason
        if revert is not None:
            changes["revert"] = revert
        if previous is not None:
            changes["previous"] = _dumps(dict(previous))
        if plan is not None:
            changes["plan"] = _dumps(plan)
        if window is not None:
            changes['"window"'] = _dumps(window)
        changes["updated_ms"] = now_ms() if at_ms is None else at_ms
        with self.transaction():
            if self.rollout(rollout_id) is None:
                raise NotFound(f"unknown rollout {rollout_id!r}")
            assignments = ", ".join(f"{column} = ?" for column in changes)
            self._db.execute(
                f"UPDATE rollouts SET {assignments} WHERE id = ?", (*changes.values(), rollout_id)
            )
            found = self.rollout(rollout_id)
            assert found is not None
            return found

    def put_rollout_boards(
        self, rollout_id: str, boards: Iterable[tuple[str, int, str]], *, at_ms: int | None = None
    ) -> None:
        """Set (board id, wave, status) of boards in a rollout, adding those not yet in it."""
        at = now_ms() if at_ms is None else at_ms
        with self.transaction():
            self._db.executemany(
                "INSERT INTO rollout_boards (rollout_id, board_id, wave, status, updated_ms)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (rollout_id, board_id) DO UPDATE SET"
                " wave = excluded.wave, status = excluded.status, updated_ms = excluded.updated_ms",
                [(rollout_id, board, wave, status, at) for board, wave, status in boards],
            )

    def set_rollout_board_status(
        self, rollout_id: str, board_id: str, status: str, *, at_ms: int | None = None
    ) -> None:
        with self.transaction():
            cursor = self._db.execute(
                "UPDATE rollout_boards SET status = ?, updated_ms = ?"
                " WHERE rollout_id = ? AND board_id = ?",
                (status, now_ms() if at_ms is None else at_ms, rollout_id, board_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"board {board_id!r} is not in rollout {rollout_id!r}")

    def rollout_boards(self, rollout_id: str) -> list[RolloutBoard]:
        rows = self._all(
            "SELECT rollout_id, board_id, wave, status, updated_ms FROM rollout_boards"
            " WHERE rollout_id = ? ORDER BY wave, board_id",
            (rollout_id,),
        )
        return [RolloutBoard(str(r), str(b), int(w), str(s), int(u)) for r, b, w, s, u in rows]

    def board_rollouts(self, board_id: str) -> list[RolloutBoard]:
        """The board's status in each rollout it was part of, the latest change first."""
        rows = self._all(
            "SELECT rollout_id, board_id, wave, status, updated_ms FROM rollout_boards"
            " WHERE board_id = ? ORDER BY updated_ms DESC, rollout_id DESC",
            (board_id,),
        )
        return [RolloutBoard(str(r), str(b), int(w), str(s), int(u)) for r, b, w, s, u in rows]

    # --- health history ---------------------------------------------------------------------

    def add_health(self, board_id: str, at_ms: int, health: Mapping[str, Json]) -> None:
        """One health report into the history (keeping :attr:`history_per_board` rows)."""
        with self.transaction():
            self._add_health(board_id, at_ms, health)

    def _add_health(self, board_id: str, at_ms: int, health: Mapping[str, Json]) -> None:
        self._db.execute(
            "INSERT INTO health_history (board_id, at_ms, health) VALUES (?, ?, ?)",
            (board_id, at_ms, _dumps(dict(health))),
        )
        self._db.execute(
            "DELETE FROM health_history WHERE board_id = ?1 AND rowid IN"
            " (SELECT rowid FROM health_history WHERE board_id = ?1"
            "  ORDER BY at_ms DESC, rowid DESC LIMIT -1 OFFSET ?2)",
            (board_id, self.history_per_board),
        )

    def health_history(
        self, board_id: str, *, since_ms: int | None = None, limit: int | None = None
    ) -> list[HealthSample]:
        """A board's health reports at or after ``since_ms``, oldest first (the newest
        ``limit`` of them, if given)."""
        rows = self._all(
            "SELECT at_ms, health FROM (SELECT rowid, at_ms, health FROM health_history"
            " WHERE board_id = ? AND at_ms >= ? ORDER BY at_ms DESC, rowid DESC LIMIT ?)"
            " ORDER BY at_ms, rowid",
            (board_id, since_ms or 0, -1 if limit is None else limit),
        )
        return [HealthSample(board_id, int(at), json.loads(h)) for at, h in rows]

    def health_added(
        self, after_rowid: int, *, since_ms: int = 0
    ) -> tuple[int, list[HealthSample]]:
        """Health reports added to the history after ``after_rowid`` (and taken at or after
        ``since_ms``), in the order they were added, and the last rowid: what a reader that
        keeps its own window reads each time (0: from the start)."""
        rows = self._all(
            "SELECT rowid, board_id, at_ms, health FROM health_history"
            " WHERE rowid > ? AND at_ms >= ? ORDER BY rowid",
            (after_rowid, since_ms),
        )
        last = int(rows[-1][0]) if rows else after_rowid
        return last, [HealthSample(str(b), int(at), json.loads(h)) for _, b, at, h in rows]

    def prune_history(self, older_than_ms: int) -> int:
        """Delete health reports taken before ``older_than_ms``, and reading history buckets
        (per board and fleet-wide) that end at or before it; returns how many rows went."""
        # A bucket that straddles the cut keeps readings that are not old yet.
        last_start = older_than_ms - READING_BUCKET_MS
        with self.transaction():
            deleted = self._db.execute(
                "DELETE FROM health_history WHERE at_ms < ?", (older_than_ms,)
            ).rowcount
            for table in ("reading_history", "reading_totals"):
                deleted += self._db.execute(
                    f"DELETE FROM {table} WHERE bucket_ms <= ?", (last_start,)
                ).rowcount
            return deleted

    # --- reading summaries ------------------------------------------------------------------

    def add_readings(self, board_id: str, readings: Iterable[tuple[str, float, int]]) -> None:
        """Fold (quantity, value, time ms) readings into the board's running statistics
        (Welford's update) and its reading history buckets, all in one transaction."""
        with self.transaction():
            for quantity, value, time_ms in readings:
                x = float(value)
                self._add_to_history(board_id, quantity, x, time_ms)
                found = self.summary(board_id, quantity)
                if found is None:
                    count, mean, m2, low, high = 1, x, 0.0, x, x
                    last_value, last_ms = x, time_ms
                else:
                    count = found.count + 1
                    delta = x - found.mean
                    mean = found.mean + delta / count
                    m2 = found.m2 + delta * (x - mean)
                    low, high = min(found.min, x), max(found.max, x)
                    newer = time_ms >= found.last_ms
                    last_value = x if newer else found.last_value
                    last_ms = time_ms if newer else found.last_ms
                self._db.execute(
                    f"INSERT OR REPLACE INTO reading_summaries ({_SUMMARY})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (board_id, quantity, count, mean, m2, low, high, last_value, last_ms),
                )

    def _add_to_history(self, board_id: str, quantity: str, value: float, time_ms: int) -> None:
        # In an UPDATE every column named is its old value: the running mean's usual step.
        bucket = reading_bucket(time_ms)
        self._db.execute(
            "INSERT INTO reading_history (board_id, quantity, bucket_ms, count, mean, min, max)"
            " VALUES (?1, ?2, ?3, 1, ?4, ?4, ?4) ON CONFLICT DO UPDATE SET count = count + 1,"
            " mean = mean + (excluded.mean - mean) / (count + 1),"
            " min = min(min, excluded.min), max = max(max, excluded.max)",
            (board_id, quantity, bucket, value),
        )
        self._db.execute(
            "INSERT INTO reading_totals (bucket_ms, count) VALUES (?, 1)"
            " ON CONFLICT DO UPDATE SET count = count + 1",
            (bucket,),
        )

    def reading_history(self, board_id: str, *, since_ms: int = 0) -> list[ReadingBucket]:
        """A board's reading history buckets that end after ``since_ms``, by quantity, then
        oldest first."""
        rows = self._all(
            "SELECT quantity, bucket_ms, count, mean, min, max FROM reading_history"
            " WHERE board_id = ? AND bucket_ms > ? ORDER BY quantity, bucket_ms",
            (board_id, since_ms - READING_BUCKET_MS),
        )
        return [
            ReadingBucket(str(q), int(start), int(n), float(mean), float(low), float(high))
            for q, start, n, mean, low, high in rows
        ]

    def readings_since(self, since_ms: int) -> int:
        """How many readings fleet.db has received that were taken in buckets starting at or
        after ``since_ms`` (exact when it is a bucket's start, as midnight UTC is)."""
        row = self._one(
            "SELECT coalesce(sum(count), 0) FROM reading_totals WHERE bucket_ms >= ?", (since_ms,)
        )
        return int(row[0])

    def summary(self, board_id: str, quantity: str) -> ReadingSummary | None:
        row = self._one(
            f"SELECT {_SUMMARY} FROM reading_summaries WHERE board_id = ? AND quantity = ?",
            (board_id, quantity),
        )
        return None if row is None else _summary(row)

    def summaries(self, board_id: str | None = None) -> list[ReadingSummary]:
        rows = self._all(
            f"SELECT {_SUMMARY} FROM reading_summaries WHERE ?1 IS NULL OR board_id = ?1"
            " ORDER BY board_id, quantity",
            (board_id,),
        )
        return [_summary(r) for r in rows]

    # --- alerts -----------------------------------------------------------------------------

    def raise_alert(
        self,
        rule: str,
        subject: str,
        subject_kind: str,
        detail: Mapping[str, Json],
        *,
        at_ms: int | None = None,
    ) -> tuple[Alert, bool]:
        """Open an alert for ``(rule, subject)``, or refresh the detail of the one open.
        Returns the alert and whether it is new."""
        with self.transaction():
            row = self._one(
                f"SELECT {_ALERT} FROM alerts WHERE rule = ? AND subject = ? AND state = 'open'",
                (rule, subject),
            )
            if row is not None:
                self._db.execute(
                    "UPDATE alerts SET detail = ? WHERE id = ?", (_dumps(dict(detail)), row[0])
                )
                return self._require_alert(int(row[0])), False
            cursor = self._db.execute(
                "INSERT INTO alerts (rule, subject, subject_kind, state, raised_ms, detail)"
                " VALUES (?, ?, ?, 'open', ?, ?)",
                (rule, subject, subject_kind, now_ms() if at_ms is None else at_ms,
                 _dumps(dict(detail))),
            )  # fmt: skip
            assert cursor.lastrowid is not None
            return self._require_alert(cursor.lastrowid), True

    def clear_alert(self, rule: str, subject: str, *, at_ms: int | None = None) -> Alert | None:
        """Clear the open alert for ``(rule, subject)``; None if there was none."""
        with self.transaction():
            row = self._one(
                "SELECT id FROM alerts WHERE rule = ? AND subject = ? AND state = 'open'",
                (rule, subject),
            )
            if row is None:
                return None
            self._db.execute(
                "UPDATE alerts SET state = 'cleared', cleared_ms = ? WHERE id = ?",
                (now_ms() if at_ms is None else at_ms, row[0]),
            )
            return self._require_alert(int(row[0]))

    def acknowledge_alert(
        self, alert_id: int, operator: str, note: str, *, at_ms: int | None = None
    ) -> Alert:
        """An operator has seen the alert (it stays open until its rule clears it)."""
        with self.transaction():
            self._require_alert(alert_id)
            self._db.execute(
                "UPDATE alerts SET acked_ms = ?, acked_by = ?, note = ? WHERE id = ?",
                (now_ms() if at_ms is None else at_ms, operator, note, alert_id),
            )
            return self._require_alert(alert_id)

    def alert(self, alert_id: int) -> Alert | None:
        row = self._one(f"SELECT {_ALERT} FROM alerts WHERE id = ?", (alert_id,))
        return None if row is None else _alert(row)

    def _require_alert(self, alert_id: int) -> Alert:
        alert = self.alert(alert_id)
        if alert is None:
            raise NotFound(f"unknown alert {alert_id}")
        return alert

    def open_alerts(self) -> list[Alert]:
        rows = self._all(f"SELECT {_ALERT} FROM alerts WHERE state = 'open' ORDER BY id")
        return [_alert(r) for r in rows]

    def recent_alerts(
        self, *, since_ms: int = 0, limit: int = 200, subject: str | None = None
    ) -> list[Alert]:
        """Open and cleared alerts raised at or after ``since_ms`` (about ``subject`` only,
        if given), newest first."""
        rows = self._all(
            f"SELECT {_ALERT} FROM alerts WHERE raised_ms >= ?1 AND (?3 IS NULL OR subject = ?3)"
            " ORDER BY id DESC LIMIT ?2",
            (since_ms, limit, subject),
        )
        return [_alert(r) for r in rows]

    def raised_severities(self, targets: Sequence[str]) -> dict[str, str]:
        """The severity the health rules gave each ``rule:subject`` in ``targets`` when they
        last raised it. The alerts table keeps none: the audit entry of the raise has it."""
        if not targets:
            return {}
        marks = ", ".join("?" for _ in targets)
        rows = self._all(
            "SELECT target, json_extract(detail, '$.severity') FROM audit"
            f" WHERE action = 'alert.raised' AND target IN ({marks}) ORDER BY seq",
            tuple(targets),
        )
        return {str(t): str(s) for t, s in rows if s is not None}

    # --- desired documents ------------------------------------------------------------------

    def next_desired_seq(self, gateway_id: str) -> int:
        """The seq the next desired document for ``gateway_id`` must carry."""
        row = self._one("SELECT seq FROM desired_docs WHERE gateway_id = ?", (gateway_id,))
        return 1 if row is None else int(row[0]) + 1

    def put_desired(
        self, gateway_id: str, seq: int, doc: bytes, *, at_ms: int | None = None
    ) -> DesiredDoc:
        """Record the signed document just published; refuses a ``seq`` not above the last."""
        published = now_ms() if at_ms is None else at_ms
        with self.transaction():
            last = self.desired(gateway_id)
            if last is not None and seq <= last.seq:
                raise Conflict(
                    f"desired seq {seq} for gateway {gateway_id!r} is not above {last.seq}"
                )
            self._db.execute(
                "INSERT OR REPLACE INTO desired_docs (gateway_id, seq, doc, published_ms)"
                " VALUES (?, ?, ?, ?)",
                (gateway_id, seq, doc, published),
            )
        return DesiredDoc(gateway_id, seq, doc, published)

    def desired(self, gateway_id: str) -> DesiredDoc | None:
        row = self._one(
            "SELECT seq, doc, published_ms FROM desired_docs WHERE gateway_id = ?", (gateway_id,)
        )
        return None if row is None else DesiredDoc(gateway_id, int(row[0]), bytes(row[1]),
                                                    int(row[2]))  # fmt: skip

    # --- settings ---------------------------------------------------------------------------

    def setting(self, key: str, default: Json = None) -> Json:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else json.loads(row[0])

    def put_setting(self, key: str, value: Json) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, _dumps(value))
            )

    def settings(self) -> dict[str, Json]:
        rows = self._all("SELECT key, value FROM settings ORDER BY key")
        return {str(k): json.loads(v) for k, v in rows}

    # --- audit ------------------------------------------------------------------------------

    def append_audit(
        self,
        operator: str,
        action: str,
        target: str,
        detail: Mapping[str, Json],
        result: str,
        *,
        at_ms: int | None = None,
    ) -> AuditEntry:
        """Append an entry to the audit chain and move its head (see :mod:`fleet.audit`)."""
        at = now_ms() if at_ms is None else at_ms
        detail = json.loads(_dumps(dict(detail)))  # exactly what reading it back gives
        with self.transaction():
            head = self.audit_head()
            seq, prev = (1, GENESIS) if head is None else (head.count + 1, head.digest)
            digest = entry_digest(seq, at, operator, action, target, detail, result, prev)
            self._db.execute(
                f"INSERT INTO audit ({_AUDIT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, at, operator, action, target, _dumps(detail), result, prev, digest),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO audit_head (id, count, digest) VALUES (1, ?, ?)",
                (seq, digest),
            )
        return AuditEntry(seq, at, operator, action, target, detail, result, prev, digest)

    def audit_head(self) -> AuditHead | None:
        row = self._one("SELECT count, digest FROM audit_head WHERE id = 1")
        return None if row is None else AuditHead(int(row[0]), bytes(row[1]))

    def audit_entries(self, *, after_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        rows = self._all(
            f"SELECT {_AUDIT} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, -1 if limit is None else limit),
        )
        return [_audit(r) for r in rows]

    def audit_log(self) -> tuple[list[AuditEntry], AuditHead | None]:
        """Every entry and the head, from one snapshot (for :func:`fleet.audit.verify`)."""
        with self.reads():
            return self.audit_entries(), self.audit_head()


def _flood(levels: Mapping[str, float] | None) -> str | None:
    if levels is None:
        return None
    for name, metres in levels.items():
        if not isinstance(name, str) or isinstance(metres, bool):
            raise ValueError("flood levels map a level name to metres")
        if not isinstance(metres, int | float):
            raise ValueError(f"flood level {name!r}: {metres!r} is not a number of metres")
    return _dumps({name: float(metres) for name, metres in levels.items()})


def _board(row: Any) -> Board:
    bid, kind, site, gw, enrolled, retired, running, ota, ota_detail, seen, health = row[:11]
    health_ms, desired, tags = row[11:]
    return Board(
        str(bid), str(kind), str(site), str(gw), int(enrolled), _int(retired), int(running),
        _str(ota), _str(ota_detail), _int(seen), _loads(health), _int(health_ms),
        tuple(str(tags).split("\n")) if tags else (), int(desired),
    )  # fmt: skip
