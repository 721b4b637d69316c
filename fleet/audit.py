"""The operator audit log: append-only and hash-chained.

Every change an operator makes (a CLI command, a rollout started from the console) appends
one entry to the ``audit`` table of fleet.db: who (``operator``), what (``action`` on
``target``, with ``detail``), when (``at_ms``) and how it ended (``result``: ``"ok"`` or the
error). Entry ``seq`` (1, 2, 3, …) names the digest of entry ``seq - 1`` in ``prev`` (32 zero
bytes for the first), and its ``digest`` is the SHA-256 of the canonical CBOR (RFC 8949
§4.2.1, cbor2 ``canonical=True``) of the array
``[seq, at_ms, operator, action, target, detail, result, prev]``.

A second table, ``audit_head``, holds one row: how many entries there are and the newest
one's digest, written in the same transaction as each entry. Appending takes its ``seq``
and ``prev`` from the head, never from the table, so an entry deleted at the end stays a
visible gap even after later appends.

What :func:`verify` detects, naming the entry:

- an entry whose columns were edited (its digest no longer matches its content), or edited
  and re-hashed (the next entry still names the old digest);
- an entry deleted from the middle (a gap in ``seq``, or the next entry naming a digest
  that no longer exists), and entries deleted from the end (fewer than the head records);
- an entry inserted, in the middle (the entry after it names the one before it; the rows
  renumbered to make room no longer match their digests) or at the end (beyond the head).

What it does not protect against: someone who can write fleet.db and rewrites the whole
chain from the altered entry onwards *and* the head. The digests are not keyed and the head
sits in the same file, so such a rewrite verifies as intact. Anchoring the head outside
fleet.db (printing it, signing it with the operator key, publishing it to the gateways) is
future work; until then the log proves the history to someone who trusts the file's host,
and catches careless or partial tampering.

This module is pure: the SQL is in :mod:`fleet.store`, which calls :func:`entry_digest`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2

#: ``prev`` of the first entry.
GENESIS: Final = bytes(32)
#: How far :func:`verify` looks for the ``seq`` a renumbered entry was written with.
_RENUMBER_WINDOW: Final = 16


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A row of ``audit``."""

    seq: int
    at_ms: int
    operator: str
    action: str
    target: str
    detail: Mapping[str, Any]
    result: str
    prev: bytes
    digest: bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at_ms": self.at_ms,
            "operator": self.operator,
            "action": self.action,
            "target": self.target,
            "detail": dict(self.detail),
            "result": self.result,
            "prev": self.prev.hex(),
            "digest": self.digest.hex(),
        }


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The row of ``audit_head``: the number of entries and the newest one's digest."""

    count: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One thing :func:`verify` found: the entry it concerns and what happened to it."""

    seq: int
    #: ``edited``, ``deleted``, ``inserted``, ``renumbered`` or ``head``.
    kind: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


def entry_digest(
    seq: int,
    at_ms: int,
    operator: str,
    action: str,
    target: str,
    detail: Mapping[str, Any],
    result: str,
    prev: bytes,
) -> bytes:
    """SHA-256 of the canonical CBOR array of an entry's fields (see the module docstring)."""
    encoded = cbor2.dumps(
        [seq, at_ms, operator, action, target, dict(detail), result, prev], canonical=True
    )
    return hashlib.sha256(encoded).digest()


def _digest_as(entry: AuditEntry, seq: int) -> bytes:
    return entry_digest(
        seq,
        entry.at_ms,
        entry.operator,
        entry.action,
        entry.target,
        entry.detail,
        entry.result,
        entry.prev,
    )


def _written_as(entry: AuditEntry) -> int | None:
    """The ``seq`` a renumbered entry's digest was computed with, if one is near."""
    for shift in range(1, _RENUMBER_WINDOW + 1):
        for seq in (entry.seq - shift, entry.seq + shift):
            if seq > 0 and _digest_as(entry, seq) == entry.digest:
                return seq
    return None


def _span(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first}..{last}"


def verify(entries: Sequence[AuditEntry], head: AuditHead | None) -> list[AuditProblem]:
    """Every problem in ``entries`` (in ``seq`` order, as stored) and ``head``; none if intact.

    ``entries`` and ``head`` must come from one read transaction
    (:meth:`fleet.store.FleetStore.audit_log`), or an append between them looks like an
    insertion.
    """
    problems: list[AuditProblem] = []
    seen: dict[bytes, int] = {GENESIS: 0}  # digest -> seq of the entry that has it
    last_seq = 0
    last_digest = GENESIS
    for i, entry in enumerate(entries):
        if _digest_as(entry, entry.seq) != entry.digest:
            origin = _written_as(entry)
            if origin is None:
                problems.append(
                    AuditProblem(
                        entry.seq,
                        "edited",
                        f"entry {entry.seq} was edited: its content no longer matches its digest",
                    )
                )
            else:
                problems.append(
                    AuditProblem(
                        entry.seq,
                        "renumbered",
                        f"entry {entry.seq} was written as entry {origin} and renumbered",
                    )
                )
        if entry.prev != last_digest:
            problems.append(_break(entry, entries[i + 1 :], last_seq, seen))
        seen[entry.digest] = entry.seq
        last_seq, last_digest = entry.seq, entry.digest
    problems.extend(_check_head(head, last_seq, last_digest, seen))
    return problems


def _break(
    entry: AuditEntry, after: Sequence[AuditEntry], last_seq: int, seen: Mapping[bytes, int]
) -> AuditProblem:
    """Why ``entry`` does not name the entry before it (``last_seq``) as its predecessor."""
    if entry.prev in seen:
        # It names an earlier entry: the ones between were put there since.
        first = seen[entry.prev] + 1
        return AuditProblem(
            first,
            "inserted",
            f"{_span(first, entry.seq - 1)} inserted: entry {entry.seq}"
            f" was written after entry {first - 1}",
        )
    if entry.seq > last_seq + 1:
        return AuditProblem(
            last_seq + 1,
            "deleted",
            f"{_span(last_seq + 1, entry.seq - 1)} deleted: entry"
            f" {entry.seq} follows entry {last_seq}",
        )
    if after and after[0].prev == entry.prev and last_seq > 0:
        return AuditProblem(
            entry.seq,
            "inserted",
            f"entry {entry.seq} inserted: entry {after[0].seq} names the same predecessor",
        )
    if last_seq > 0:
        return AuditProblem(
            last_seq,
            "edited",
            f"entry {last_seq} was replaced (edited and re-hashed): entry"
            f" {entry.seq} names another digest for it",
        )
    return AuditProblem(
        entry.seq,
        "deleted",
        f"the entries before entry {entry.seq} were deleted: it names a"
        " predecessor that is not there",
    )


def _check_head(
    head: AuditHead | None, last_seq: int, last_digest: bytes, seen: Mapping[bytes, int]
) -> list[AuditProblem]:
    if head is None:
        if last_seq == 0:
            return []
        return [AuditProblem(last_seq, "head", "the audit head is missing (deleted)")]
    if head.digest == last_digest:
        return []  # a count that differs is renumbering, reported entry by entry
    if head.digest in seen:
        first = seen[head.digest] + 1
        return [
            AuditProblem(
                first,
                "inserted",
                f"{_span(first, last_seq)} inserted after the newest entry"
                f" the head records ({first - 1})",
            )
        ]
    if head.count > last_seq:
        first = last_seq + 1
        return [
            AuditProblem(
                first,
                "deleted",
                f"{_span(first, head.count)} deleted: the head records"
                f" {head.count} entries, the log ends at {last_seq}",
            )
        ]
    if head.count == last_seq:
        return [
            AuditProblem(
                last_seq,
                "edited",
                f"entry {last_seq} was replaced (edited and re-hashed): the"
                " head records another digest for it",
            )
        ]
    return [
        AuditProblem(
            min(head.count, last_seq),
            "head",
            f"the head records {head.count} entries ending"
            " in a digest no entry has: the log or the head was rewritten",
        )
    ]
