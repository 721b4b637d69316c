"""The gateway's SQLite file: its tables, their version, and how a file is opened.

One file (``<state_dir>/gateway.db``, WAL mode) holds everything the gateway keeps::

    readings         the outbox: every stored reading; ``id`` is its position, never reused
    boards           the registry: first/last seen, address, sequence mark, last health
    uplink_progress  each readings uplink's cursor (the last outbox id it delivered)
    batches          signed batches, kept until every batch uplink has them
    batch_chain      one row: the chain state after the newest batch, the batcher's cursor
    batch_progress   each batch uplink's cursor (and the batch file's size after it)
    outbox_counters  persistent counters: readings and batches pruned, dropped, invalid
    releases         the OTA cache: each verified release, its manifest and its files' directory
    ota_revocations  one row: the newest root-signed revocation list any release carried
    desired_releases the release each board (or each kind of board) should run
    board_ota        each board's OTA state, and the release it runs, as its health says
    control_desired  one row: the desired document the control channel applied last
    control_revocations  one row: the newest revocation list the control channel saw
    control_nonces   commands' nonces, kept until the command expires
    control_counters refusals by reason, message seqs, events dropped
    board_commands   commands waiting for a board's next contact (reboot)
    control_events   events not yet published (bounded: the oldest are dropped, counted)
    control_marks    what each board's last health said, to derive events from changes
    board_keys       each enrolled board's OSCORE key material (and the one before a rotation)

**Versions.** ``PRAGMA user_version`` is the schema version. :func:`prepare` creates a new
file at :data:`SCHEMA_VERSION`, or migrates an older one forward, one step per version, each
step in one transaction (a crash leaves the file at the old version or the new, never
between), and refuses a file from a newer release rather than guess. Gateways in the field
are upgraded in place: their readings, cursors and batches must survive every step.

Every SQL statement of the gateway lives in this package (``gateway.store``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from gateway.errors import StateDirError, StoreCorrupt

#: The version :func:`prepare` leaves every file at.
SCHEMA_VERSION: Final = 6
#: Busy waits on the write lock (another process's cursor update, a checkpoint).
_BUSY_TIMEOUT_MS: Final = 5000

# Version 1, as the first release wrote it (readings pipeline and signed batches).
_SCHEMA_V1: Final = """
CREATE TABLE IF NOT EXISTS readings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- outbox position, never reused
    board_id    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    unit        TEXT,
    kind        TEXT    NOT NULL,                   -- v, vs, vb, vd or s (SenML field)
    value,                                          -- no affinity: stored exactly as it came
    time_ms     INTEGER NOT NULL,                   -- when measured, Unix epoch milliseconds
    received_ms INTEGER NOT NULL,                   -- when the gateway received it
    UNIQUE (board_id, name, time_ms)
);
CREATE TABLE IF NOT EXISTS boards (
    board_id      TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    address       TEXT,                             -- last transport address, host:port
    last_seq      INTEGER,                          -- highest record sequence number seen
    missed        INTEGER NOT NULL DEFAULT 0,       -- records the board dropped (seq gaps)
    last_health   TEXT,                             -- last health report, JSON
    health_ms     INTEGER
);
CREATE TABLE IF NOT EXISTS uplink_progress (
    uplink       TEXT PRIMARY KEY,
    delivered_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq        INTEGER PRIMARY KEY,   -- the batch's place in the gateway's chain, from 1
    first_id   INTEGER NOT NULL,      -- outbox ids (readings.id) it covers, inclusive
    last_id    INTEGER NOT NULL,
    readings   INTEGER NOT NULL,      -- how many readings it carries
    created_ms INTEGER NOT NULL,      -- when it was signed, Unix ms
    digest     BLOB    NOT NULL,      -- SHA-256 of encoded: the next batch's prev
    encoded    BLOB    NOT NULL       -- the COSE_Sign1 bytes, sent exactly as they are
);
CREATE TABLE IF NOT EXISTS batch_chain (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    state      BLOB    NOT NULL,      -- ChainState.encode() after the newest batch
    batched_id INTEGER NOT NULL       -- the batcher's cursor: last outbox id in a batch
);
CREATE TABLE IF NOT EXISTS batch_progress (
    uplink        TEXT PRIMARY KEY,
    delivered_seq INTEGER NOT NULL,
    file_offset   INTEGER             -- file uplink: the file's size after that batch
);
CREATE TABLE IF NOT EXISTS outbox_counters (
    name  TEXT PRIMARY KEY,           -- pruned_readings, dropped_batches, ...
    value INTEGER NOT NULL
);
"""


def _to_v2(db: sqlite3.Connection) -> None:
    """Version 2: the registry counts anomalies (a board's sequence jumping implausibly)."""
    # anomalies: requests whose sequence numbers were implausible, so not believed.
    db.execute("ALTER TABLE boards ADD COLUMN anomalies INTEGER NOT NULL DEFAULT 0")


_SCHEMA_V3: Final = """
CREATE TABLE releases (
    seq         INTEGER PRIMARY KEY,  -- the manifest's sequence number (fleet-wide, growing)
    version     TEXT    NOT NULL,     -- "X.Y.Z", for people
    hw          TEXT    NOT NULL,     -- hardware class
    manifest    BLOB    NOT NULL,     -- the manifest's COSE_Sign1, exactly as boards get it
    revocations INTEGER NOT NULL,     -- seq of the revocation list the manifest carries
    total       INTEGER NOT NULL,     -- bytes of all its files
    directory   TEXT    NOT NULL,     -- where its files are, relative to the state dir
    added_ms    INTEGER NOT NULL
);
CREATE TABLE ota_revocations (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    seq     INTEGER NOT NULL,         -- the newest list's seq: older lists are refused
    encoded BLOB    NOT NULL          -- the root-signed list itself
);
CREATE TABLE desired_releases (
    scope   TEXT    NOT NULL CHECK (scope IN ('board', 'kind')),
    target  TEXT    NOT NULL,         -- a board id, or a kind of board
    seq     INTEGER NOT NULL,         -- a cached release
    set_ms  INTEGER NOT NULL,
    PRIMARY KEY (scope, target)
);
CREATE TABLE board_ota (
    board_id   TEXT PRIMARY KEY,
    state      TEXT    NOT NULL,      -- downloading, verified, installed, trial, confirmed, ...
    detail     TEXT,                  -- progress or reason, as the board said it
    updated_ms INTEGER NOT NULL
);
"""


def _to_v3(db: sqlite3.Connection) -> None:
    """Version 3: the OTA cache, desired releases and each board's OTA state."""
    for statement in _SCHEMA_V3.split(";"):
        if statement.strip():
            db.execute(statement)


def _to_v4(db: sqlite3.Connection) -> None:
    """Version 4: the release each board runs, beside its OTA state."""
    # running: the seq of the release in the board's running slot (0: its factory app).
    db.execute("ALTER TABLE board_ota ADD COLUMN running INTEGER NOT NULL DEFAULT 0")


_SCHEMA_V5: Final = """
CREATE TABLE control_desired (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    seq        INTEGER NOT NULL,      -- the document's seq: only a higher one is applied
    encoded    BLOB    NOT NULL,      -- the envelope exactly as it came (verified again at start)
    applied_ms INTEGER NOT NULL
);
CREATE TABLE control_revocations (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    seq     INTEGER NOT NULL,         -- the newest list's seq: envelopes with older are refused
    encoded BLOB    NOT NULL
);
CREATE TABLE control_nonces (
    nonce   BLOB    PRIMARY KEY,      -- a command's id
    expires INTEGER NOT NULL          -- unix s: pruned after, when the command is refused anyway
);
CREATE TABLE control_counters (
    name  TEXT PRIMARY KEY,           -- refused.<reason>, state_seq, events_seq, events_dropped
    value INTEGER NOT NULL
);
CREATE TABLE board_commands (
    id         BLOB    PRIMARY KEY,   -- the command's id (nonce): its reply names it
    board_id   TEXT    NOT NULL,
    action     TEXT    NOT NULL,      -- reboot
    boot_count INTEGER NOT NULL,      -- the board's boot count when the command came
    expires    INTEGER NOT NULL       -- unix s: then it fails
);
CREATE TABLE control_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms  INTEGER NOT NULL,
    kind   TEXT    NOT NULL,
    board  TEXT,
    detail BLOB    NOT NULL           -- CBOR map
);
CREATE TABLE control_rollout (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    progress TEXT    NOT NULL         -- JSON: how far this gateway took the rollout
);                                    -- (gateway.control.reconciler.Progress)
CREATE TABLE control_marks (
    board_id   TEXT PRIMARY KEY,
    boot_count INTEGER,               -- from its last health seen
    ota_state  TEXT,                  -- board_ota.state and detail last seen
    ota_detail TEXT
);
"""


def _to_v5(db: sqlite3.Connection) -> None:
    """Version 5: the control channel's tables (``gateway.store.control``)."""
    for statement in _SCHEMA_V5.split(";"):
        if statement.strip():
            db.execute(statement)


_SCHEMA_V6: Final = """
CREATE TABLE board_keys (
    board_id   TEXT    PRIMARY KEY,
    sid        BLOB    NOT NULL UNIQUE,   -- the board's OSCORE Sender ID (its kid)
    material   TEXT    NOT NULL,          -- key material as JSON (gateway.oscore.keys)
    previous   TEXT,                      -- the material before the last rotation
    source     TEXT    NOT NULL,          -- 'file' (boards import) or 'control' (desired)
    updated_ms INTEGER NOT NULL           -- grows at every change (the daemon polls it)
)
"""


def _to_v6(db: sqlite3.Connection) -> None:
    """Version 6: the enrolled boards' OSCORE keys (``gateway.store.board_keys``)."""
    db.execute(_SCHEMA_V6)


#: ``_MIGRATIONS[v]`` takes a file from version ``v`` to ``v + 1``.
_MIGRATIONS: Final[dict[int, Callable[[sqlite3.Connection], None]]] = {
    1: _to_v2,
    2: _to_v3,
    3: _to_v4,
    4: _to_v5,
    5: _to_v6,
}


def now_ms() -> int:
    """Wall-clock time as integer Unix milliseconds."""
    return time.time_ns() // 1_000_000


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with a busy timeout."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if read_only:
            db.execute("PRAGMA query_only = 1")
    except sqlite3.OperationalError as exc:
        raise StateDirError(f"cannot open database {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from None
    return db


def _corrupt(path: Path, exc: Exception) -> StoreCorrupt:
    return StoreCorrupt(f"{path}: SQLite cannot use this file ({exc}); it was left untouched")


def prepare(path: Path) -> int:
    """Create the schema, or migrate the file forward; switch to WAL. Returns the old version.

    The daemon calls this before it starts any process, so a bad file is reported at once.
    Raises :class:`StoreCorrupt` for a file SQLite cannot use or one written by a newer
    release (its version above :data:`SCHEMA_VERSION`), leaving it untouched.
    """
    db = connect(path)
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreCorrupt(
                f"{path} has schema version {version}, newer than this release's "
                f"{SCHEMA_VERSION}; upgrade simpul (the file was left untouched)"
            )
        db.execute("PRAGMA journal_mode = WAL")
        with transaction(db):
            (version,) = db.execute("PRAGMA user_version").fetchone()
            tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
            if version == 0 and tables.fetchone()[0] == 0:
                _create(db)
                return SCHEMA_VERSION
        for step in range(max(version, 1), SCHEMA_VERSION):
            with transaction(db):
                # A version 1 file made its batch tables only once a batcher ran.
                _create_v1_tables(db)
                _MIGRATIONS[step](db)
                db.execute(f"PRAGMA user_version = {step + 1}")
        return int(version)
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from None
    finally:
        db.close()


def _create_v1_tables(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)


def _create(db: sqlite3.Connection) -> None:
    """A new file: version 1's tables, then every migration (one definition of each table)."""
    _create_v1_tables(db)
    for step in range(1, SCHEMA_VERSION):
        _MIGRATIONS[step](db)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def read_counters(db: sqlite3.Connection) -> dict[str, int]:
    """The persistent outbox counters by name (absent ones are 0)."""
    return {
        name: int(value) for name, value in db.execute("SELECT name, value FROM outbox_counters")
    }


def add_counter(db: sqlite3.Connection, name: str, amount: int) -> None:
    """Add to a persistent counter; call inside the transaction that did the counted thing."""
    if amount:
        db.execute(
            "INSERT INTO outbox_counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )
