"""What the fleet records, as frozen dataclasses: the values :class:`fleet.store.FleetStore`
takes and returns, independent of how they are stored (a server database could hold them
for a province). JSON columns come back as plain ``dict``/``list`` values; each record's
``as_json`` gives the stable keys the CLI prints with ``--json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: A decoded JSON value.
Json = Any


@dataclass(frozen=True, slots=True)
class Site:
    site_id: str
    name: str
    created_ms: int
    #: Water boards' flood thresholds: level name -> metres (None: none set).
    flood_levels: Mapping[str, float] | None

    def as_json(self) -> dict[str, Json]:
        return {
            "site_id": self.site_id,
            "name": self.name,
            "created_ms": self.created_ms,
            "flood_levels": None if self.flood_levels is None else dict(self.flood_levels),
        }


@dataclass(frozen=True, slots=True)
class Gateway:
    gateway_id: str
    site_id: str
    #: Raw 32-byte Ed25519 public key: the gateway's batch key, which signs its state.
    public_key: bytes
    added_ms: int
    #: When the last verified ``state`` was taken (its ``at``), and its ``seq``.
    last_state_ms: int | None
    state_seq: int | None
    #: That state's ``health`` part.
    last_state: Mapping[str, Json] | None
    retired_ms: int | None
    #: Raw X25519 public key the gateway's state named, to which board keys are sealed
    #: (``gateway.oscore.seal``); None until its first state that names one.
    seal_key: bytes | None = None

    def as_json(self) -> dict[str, Json]:
        return {
            "gateway_id": self.gateway_id,
            "site_id": self.site_id,
            "public_key": self.public_key.hex(),
            "added_ms": self.added_ms,
            "last_state_ms": self.last_state_ms,
            "state_seq": self.state_seq,
            "last_state": None if self.last_state is None else dict(self.last_state),
            "retired_ms": self.retired_ms,
            "seal_key": None if self.seal_key is None else self.seal_key.hex(),
        }


@dataclass(frozen=True, slots=True)
class Board:
    board_id: str
    kind: str
    site_id: str
    gateway_id: str
    enrolled_ms: int
    retired_ms: int | None
    #: The seq of the release it runs (0: its factory application, or not yet reported).
    running: int
    ota_state: str | None
    ota_detail: str | None
    last_seen_ms: int | None
    last_health: Mapping[str, Json] | None
    health_ms: int | None
    tags: tuple[str, ...]
    #: The release the fleet wants it to run outside a rollout (0: none set).
    desired: int = 0

    def as_json(self) -> dict[str, Json]:
        return {
            "board_id": self.board_id,
            "desired": self.desired,
            "kind": self.kind,
            "site_id": self.site_id,
            "gateway_id": self.gateway_id,
            "enrolled_ms": self.enrolled_ms,
            "retired_ms": self.retired_ms,
            "running": self.running,
            "ota_state": self.ota_state,
            "ota_detail": self.ota_detail,
            "last_seen_ms": self.last_seen_ms,
            "last_health": None if self.last_health is None else dict(self.last_health),
            "health_ms": self.health_ms,
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class BoardReport:
    """One board's part of a gateway's verified ``state``, as the fleet records it."""

    board_id: str
    last_seen_ms: int
    running: int
    ota_state: str | None = None
    ota_detail: str | None = None
    health: Mapping[str, Json] | None = None
    health_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """A release file the fleet holds, without its bytes."""

    seq: int
    version: str
    hw: str
    added_ms: int
    size: int


@dataclass(frozen=True, slots=True)
class Rollout:
    """A rollout as stored; what its fields mean is ``fleet.rollouts``' business."""

    id: str
    release: int
    revert: int | None
    #: board id -> the release seq it ran before.
    previous: Mapping[str, int]
    state: str
    reason: str | None
    target: Json
    plan: Json
    limits: Mapping[str, Json]
    window: Json | None
    created_ms: int
    updated_ms: int
    operator: str


@dataclass(frozen=True, slots=True)
class RolloutBoard:
    rollout_id: str
    board_id: str
    wave: int
    status: str
    updated_ms: int


@dataclass(frozen=True, slots=True)
class HealthSample:
    board_id: str
    at_ms: int
    health: Mapping[str, Json]


@dataclass(frozen=True, slots=True)
class ReadingBucket:
    """The readings of one quantity of one board taken in one history bucket
    (``fleet.store.READING_BUCKET_MS`` wide, starting at ``start_ms``)."""

    quantity: str
    start_ms: int
    count: int
    mean: float
    min: float
    max: float


@dataclass(frozen=True, slots=True)
class ReadingSummary:
    """Running statistics of one quantity of one board (Welford's algorithm)."""

    board_id: str
    quantity: str
    count: int
    mean: float
    #: Sum of squared differences from the mean.
    m2: float
    min: float
    max: float
    last_value: float
    last_ms: int

    @property
    def variance(self) -> float | None:
        """Sample variance (as ``statistics.variance``); None below two readings."""
        return self.m2 / (self.count - 1) if self.count > 1 else None

    @property
    def stdev(self) -> float | None:
        variance = self.variance
        return None if variance is None else variance**0.5


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    rule: str
    #: A board id or a gateway id, as ``subject_kind`` says.
    subject: str
    subject_kind: str
    #: ``open`` or ``cleared``.
    state: str
    raised_ms: int
    cleared_ms: int | None
    acked_ms: int | None
    acked_by: str | None
    note: str | None
    detail: Mapping[str, Json]

    def as_json(self) -> dict[str, Json]:
        return {
            "id": self.id,
            "rule": self.rule,
            "subject": self.subject,
            "subject_kind": self.subject_kind,
            "state": self.state,
            "raised_ms": self.raised_ms,
            "cleared_ms": self.cleared_ms,
            "acked_ms": self.acked_ms,
            "acked_by": self.acked_by,
            "note": self.note,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True, slots=True)
class DesiredDoc:
    """The last signed ``desired`` envelope published to a gateway."""

    gateway_id: str
    seq: int
    doc: bytes
    published_ms: int


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """Counts for ``simpul fleet status``."""

    schema_version: int
    sites: int
    gateways: int
    boards: int
    retired_boards: int
    releases: int
    active_rollouts: int
    open_alerts: int
    audit_entries: int

    def as_json(self) -> dict[str, Json]:
        return {
            "schema_version": self.schema_version,
            "sites": self.sites,
            "gateways": self.gateways,
            "boards": self.boards,
            "retired_boards": self.retired_boards,
            "releases": self.releases,
            "active_rollouts": self.active_rollouts,
            "open_alerts": self.open_alerts,
            "audit_entries": self.audit_entries,
        }
