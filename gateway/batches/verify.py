"""Verifying batches as a consumer does: signatures against a key set, and each chain.

For Python consumers (``simpul verify`` is a thin command over it)::

    keys = KeySet.from_files([Path("gw-1.pub")])
    verifier = ChainVerifier(keys)
    with open("batches.cbor", "rb") as fp:
        for outcome in verify_sequence(fp, verifier):
            for problem in outcome.problems:
                print(problem)            # e.g. "gap: gateway gw-1 batches 17..19 missing"
            for reading in outcome.readings:
                ...                       # signed by the gateway, in a checked chain

Every problem has a name (:data:`ProblemKind`). All are failures except ``repeat``: uplinks
deliver at least once, so the same batch (byte for byte) may arrive again; its readings are
not given twice. A gateway's chain may start at batch 1 only, unless ``join=True`` (a
subscriber arriving late accepts the first batch it sees as the start).

Key rotation: a batch signed by a trusted key may announce ``next_key``; from the batch after
it that key is trusted for that gateway and the old one signs nothing more for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.batches.format import Batch, decode, key_id, public_bytes, skip_item, verify_signature
from gateway.codec.senml import Value, ValueKind
from gateway.errors import BadBatch, BadSignature, RetiredKey, UnknownKey

ProblemKind = Literal[
    "malformed",  # not a batch: bad CBOR, bad COSE structure, bad payload
    "unknown_key",  # signed by a key the key set does not hold (for that gateway and seq)
    "retired_key",  # signed by a key its gateway rotated out earlier in its chain
    "bad_signature",  # the signature does not verify: tampered, or the wrong key
    "gap",  # batches missing between two received ones (or before the first)
    "reordering",  # a batch older than one already received
    "fork",  # two different batches with one seq, or a prev that names another batch
    "repeat",  # the same batch again (at-least-once delivery): not a failure
    "incomplete",  # fewer batches arrived than expected
    "empty",  # no batch at all: nothing was verified
]

_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or, for ``repeat``, worth knowing) about the batches received."""

    kind: ProblemKind
    message: str
    gateway: str | None = None
    seq: int | None = None

    @property
    def is_failure(self) -> bool:
        return self.kind != "repeat"

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class VerifiedReading(NamedTuple):
    """A reading from a batch whose signature verified, with the batch it came in."""

    gateway: str
    site: str
    seq: int
    board_id: str
    name: str
    unit: str | None
    kind: ValueKind
    value: Value
    time_ms: int


@dataclass(slots=True)
class Outcome:
    """What feeding one batch to a :class:`ChainVerifier` found."""

    batch: Batch | None
    readings: list[VerifiedReading] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(slots=True)
class _TrustedKey:
    public: Ed25519PublicKey
    raw: bytes
    #: A learned key belongs to the gateway that announced it; a configured key to any.
    gateway: str | None = None
    #: First seq a learned key may sign.
    from_seq: int = 1
    #: Per gateway, the last seq this key may sign (it announced its successor there).
    last_seq: dict[str, int] = field(default_factory=dict)


class KeySet:
    """The public keys a consumer trusts, by kid; follows rotations announced in batches."""

    def __init__(self) -> None:
        self._keys: dict[bytes, _TrustedKey] = {}

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> KeySet:
        keys = cls()
        for path in paths:
            keys.add_file(path)
        return keys

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def add(self, key: Ed25519PublicKey | bytes) -> bytes:
        """Trust a key (object or raw 32 bytes) for every gateway; returns its kid."""
        public = (
            key if isinstance(key, Ed25519PublicKey) else Ed25519PublicKey.from_public_bytes(key)
        )
        raw = public_bytes(public)
        kid = key_id(raw)
        known = self._keys.get(kid)
        if known is not None and known.raw != raw:
            raise UnknownKey(f"two different keys share kid {kid.hex()}")
        if known is None:
            self._keys[kid] = _TrustedKey(public, raw)
        else:
            known.gateway, known.from_seq = None, 1  # configured now: no longer only learned
        return kid

    def add_pem(self, pem: bytes | str) -> list[bytes]:
        """Trust every Ed25519 ``PUBLIC KEY`` PEM block in ``pem``; returns their kids."""
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        blocks = _PEM_BLOCK.findall(data)
        if not blocks:
            raise UnknownKey("no PEM public key (-----BEGIN PUBLIC KEY-----) found")
        kids = []
        for block in blocks:
            try:
                public = load_pem_public_key(block)
            except ValueError as exc:
                raise UnknownKey(f"not a PEM public key: {exc}") from None
            if not isinstance(public, Ed25519PublicKey):
                raise UnknownKey("not an Ed25519 public key")
            kids.append(self.add(public))
        return kids

    def add_file(self, path: Path) -> list[bytes]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnknownKey(f"cannot read key file {path}: {exc.strerror}") from None
        try:
            return self.add_pem(data)
        except UnknownKey as exc:
            raise UnknownKey(f"key file {path}: {exc}") from None

    def verify(self, batch: Batch) -> None:
        """Check ``batch``'s signature; on success follow a rotation it announces.

        Raises :class:`UnknownKey`, :class:`RetiredKey` or :class:`BadSignature`.
        """
        where = f"gateway {batch.gateway} batch {batch.seq}"
        trusted = self._keys.get(batch.kid)
        if trusted is None:
            raise UnknownKey(f"{where} is signed by unknown key {batch.kid.hex()}")
        if trusted.gateway is not None and (
            trusted.gateway != batch.gateway or batch.seq < trusted.from_seq
        ):
            raise UnknownKey(
                f"{where} is signed by key {batch.kid.hex()}, which gateway {trusted.gateway}"
                f" announced for its batches from {trusted.from_seq}"
            )
        last = trusted.last_seq.get(batch.gateway)
        if last is not None and batch.seq > last:
            raise RetiredKey(
                f"{where} is signed by key {batch.kid.hex()}, retired after batch {last}"
            )
        verify_signature(batch, trusted.public)
        if batch.next_key is not None:
            self._follow_rotation(batch, trusted, batch.next_key)

    def _follow_rotation(self, batch: Batch, old: _TrustedKey, next_key: bytes) -> None:
        kid = key_id(next_key)
        if next_key == old.raw:
            return
        known = self._keys.get(kid)
        if known is None:
            self._keys[kid] = _TrustedKey(
                Ed25519PublicKey.from_public_bytes(next_key),
                next_key,
                gateway=batch.gateway,
                from_seq=batch.seq + 1,
            )
        elif known.raw != next_key:
            raise UnknownKey(f"announced key {kid.hex()} collides with a trusted key's kid")
        elif known.gateway == batch.gateway:
            known.from_seq = min(known.from_seq, batch.seq + 1)
        last = old.last_seq.get(batch.gateway)
        old.last_seq[batch.gateway] = batch.seq if last is None else min(last, batch.seq)


@dataclass(slots=True)
class GatewayChain:
    """What a verifier knows of one gateway's chain."""

    gateway: str
    site: str
    #: Highest seq accepted.
    head: int
    #: Digest and prev of every batch accepted, by seq.
    digests: dict[int, bytes] = field(default_factory=dict)
    prevs: dict[int, bytes] = field(default_factory=dict)
    #: Seqs reported missing that have not arrived since.
    missing: set[int] = field(default_factory=set)
    batches: int = 0
    readings: int = 0
    repeats: int = 0


class ChainVerifier:
    """Consumes batches one at a time (any gateways, interleaved) and checks each chain."""

    def __init__(self, keys: KeySet, *, join: bool = False) -> None:
        self.keys = keys
        self.join = join
        self.chains: dict[str, GatewayChain] = {}
        #: Every problem found so far, in order.
        self.problems: list[Problem] = []

    @property
    def failed(self) -> bool:
        return any(problem.is_failure for problem in self.problems)

    def report(self, problem: Problem) -> Problem:
        """Record a problem found outside :meth:`feed` (unreadable input, too few batches)."""
        self.problems.append(problem)
        return problem

    def feed(self, encoded: bytes) -> Outcome:
        """Check one batch (its complete COSE_Sign1 bytes); give its readings if accepted."""
        try:
            batch = decode(encoded)
        except BadBatch as exc:
            return self._problem(Outcome(None), "malformed", f"not a batch: {exc}")
        outcome = Outcome(batch)
        try:
            self.keys.verify(batch)
        except RetiredKey as exc:
            return self._problem(outcome, "retired_key", str(exc))
        except UnknownKey as exc:
            return self._problem(outcome, "unknown_key", str(exc))
        except BadSignature as exc:
            return self._problem(outcome, "bad_signature", str(exc))
        if self._place(batch, outcome):
            chain = self.chains[batch.gateway]
            chain.digests[batch.seq] = batch.digest
            chain.prevs[batch.seq] = batch.prev
            chain.batches += 1
            chain.readings += len(batch.readings)
            outcome.readings = [
                VerifiedReading(batch.gateway, batch.site, batch.seq, *reading)
                for reading in batch.readings
            ]
        return outcome

    def _place(self, batch: Batch, outcome: Outcome) -> bool:
        """Check ``batch`` against its chain; True if its readings are to be given."""
        gateway, seq = batch.gateway, batch.seq
        chain = self.chains.get(gateway)
        if chain is None:
            chain = self.chains[gateway] = GatewayChain(gateway, batch.site, head=seq)
            if seq > 1 and not self.join:
                chain.missing.update(range(1, seq))
                self._problem(outcome, "gap", f"gateway {gateway} {_batches(1, seq - 1)} missing")
            return True
        known = chain.digests.get(seq)
        if known == batch.digest:
            chain.repeats += 1
            self._problem(outcome, "repeat", f"gateway {gateway} batch {seq} received again")
            return False
        if known is not None:
            self._problem(
                outcome, "fork", f"gateway {gateway} batch {seq}: two different batches, one seq"
            )
            return False
        if seq > chain.head:
            if seq > chain.head + 1:
                chain.missing.update(range(chain.head + 1, seq))
                self._problem(
                    outcome, "gap", f"gateway {gateway} {_batches(chain.head + 1, seq - 1)} missing"
                )
            chain.head = seq
        else:
            chain.missing.discard(seq)
            self._problem(
                outcome,
                "reordering",
                f"gateway {gateway} batch {seq} arrived after batch {chain.head}",
            )
        self._check_links(chain, batch, outcome)
        return True

    def _check_links(self, chain: GatewayChain, batch: Batch, outcome: Outcome) -> None:
        seq = batch.seq
        before = chain.digests.get(seq - 1)
        if before is not None and batch.prev != before:
            self._problem(
                outcome,
                "fork",
                f"gateway {chain.gateway} batch {seq} does not follow batch {seq - 1}"
                " (its prev names another batch)",
            )
        after = chain.prevs.get(seq + 1)
        if after is not None and after != batch.digest:
            self._problem(
                outcome,
                "fork",
                f"gateway {chain.gateway} batch {seq + 1} does not follow batch {seq}"
                " (its prev names another batch)",
            )

    def _problem(self, outcome: Outcome, kind: ProblemKind, message: str) -> Outcome:
        batch = outcome.batch
        problem = Problem(
            kind, message, batch.gateway if batch else None, batch.seq if batch else None
        )
        self.problems.append(problem)
        outcome.problems.append(problem)
        return outcome


def _batches(first: int, last: int) -> str:
    return f"batch {first}" if first == last else f"batches {first}..{last}"


def iter_sequence(fp: BinaryIO) -> Iterator[bytes]:
    """Split a CBOR sequence (RFC 8742) read from ``fp`` into its items' complete bytes.

    Reads only as far as each item goes, so it works on pipes as batches arrive. Raises
    :class:`BadBatch` (with the byte offset) when the framing breaks: nothing after that
    point can be trusted to start an item.
    """
    offset = 0
    while True:
        first = fp.read(1)
        if not first:
            return
        try:
            item = _read_item(fp, first)
        except BadBatch as exc:
            raise BadBatch(f"input at byte {offset}: {exc}") from None
        offset += len(item)
        yield item


def _read_item(fp: BinaryIO, first: bytes) -> bytes:
    parts = [first]
    pending = [first]

    def take(count: int) -> bytes:
        if pending:
            return pending.pop()
        chunk = _read_exactly(fp, count)
        parts.append(chunk)
        return chunk

    skip_item(take)
    return b"".join(parts)


def _read_exactly(fp: BinaryIO, count: int) -> bytes:
    chunks = []
    while count:
        chunk = fp.read(count)
        if not chunk:
            raise BadBatch("truncated CBOR item")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def verify_sequence(fp: BinaryIO, verifier: ChainVerifier) -> Iterator[Outcome]:
    """Feed every batch of a CBOR sequence to ``verifier``; a broken framing ends it."""
    try:
        for item in iter_sequence(fp):
            yield verifier.feed(item)
    except BadBatch as exc:
        outcome = Outcome(None)
        outcome.problems.append(verifier.report(Problem("malformed", str(exc))))
        yield outcome


__all__ = [
    "ChainVerifier",
    "GatewayChain",
    "KeySet",
    "Outcome",
    "Problem",
    "ProblemKind",
    "VerifiedReading",
    "iter_sequence",
    "verify_sequence",
]
