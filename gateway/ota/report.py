"""The ``ota`` field of a board's health report: what it runs and where an update stands.

Documented for the firmware (a board of today sends no ``ota`` field, which means it runs
no OTA release yet: seq 0)::

    "ota": {
        "seq": uint,        ; the release seq installed in the running slot (0: none)
        "state": tstr,      ; one of STATES
        ? "detail": tstr,   ; progress ("12/40 blocks") or a refusal's reason, at most 120 chars
    }

Pure: a report in, an :class:`OtaReport` or a :class:`~gateway.errors.BadPayload` naming
what is wrong out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import BadPayload

#: Where a board stands with an update (issue 9's steps, and ``idle`` when none is under way).
STATES: Final = frozenset(
    {
        "idle",
        "downloading",
        "verified",
        "installed",
        "trial",
        "confirmed",
        "rolled_back",
        "rejected",
    }
)
MAX_DETAIL_CHARS: Final = 120
#: Largest seq believed (a CBOR uint may be 2**64 - 1; SQLite integers are signed 64-bit).
MAX_SEQ: Final = 2**63 - 1
_FIELDS: Final = frozenset({"seq", "state", "detail"})


@dataclass(frozen=True, slots=True)
class OtaReport:
    seq: int
    state: str
    detail: str | None


def ota_report(health: dict[str, Any]) -> OtaReport | None:
    """The report's ``ota`` field, checked; None when it has none."""
    if "ota" not in health:
        return None
    field = health["ota"]
    if type(field) is not dict:
        raise BadPayload(f"health 'ota' must be a map, got {type(field).__name__}")
    unknown = set(field) - _FIELDS
    if unknown:
        raise BadPayload(f"health 'ota' has unknown keys {sorted(map(str, unknown))!r:.60}")
    seq = field.get("seq")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise BadPayload(f"health 'ota' seq must be an unsigned integer, got {seq!r:.30}")
    state = field.get("state")
    if state not in STATES:
        raise BadPayload(f"health 'ota' state must be one of {', '.join(sorted(STATES))}")
    detail = field.get("detail")
    if detail is not None and (type(detail) is not str or len(detail) > MAX_DETAIL_CHARS):
        raise BadPayload(f"health 'ota' detail must be text of at most {MAX_DETAIL_CHARS} chars")
    assert isinstance(state, str)
    return OtaReport(seq, state, detail)


def running_seq(health: dict[str, Any] | None) -> int:
    """The release seq a board's (already checked) health says it runs: 0 if none or unsaid."""
    if health is None:
        return 0
    field = health.get("ota")
    if isinstance(field, dict) and type(field.get("seq")) is int:
        return int(field["seq"])
    return 0
