"""The control channel's messages: what the fleet sends gateways, and what gateways send back.

Pure functions between bytes and plain objects: no sockets, files or clocks (the caller
passes ``now``). Two directions, two trust paths:

**Fleet -> gateway** (desired-state documents and commands) is signed by an *operator key*
that the root key certified (``fleet.certs``, role ``"operator"``), so a gateway that holds
only the root public key can check it, whoever runs the broker. On the wire an *envelope*::

    envelope = {                      ; CBOR map, text keys, exactly these
        "cert": bstr,                 ; the operator key's certificate (COSE_Sign1 by the root)
        "revocations": bstr,          ; the root's current revocation list (COSE_Sign1)
        "signed": bstr,               ; COSE_Sign1 by the operator key over the payload
    }

    desired = {"type": "desired", "v": 1, "site": tstr, "gateway": tstr,
               "seq": uint,           ; per gateway; a gateway applies only a higher one
               "issued": uint,        ; Unix seconds
               "boards": {* board_id => {"kind": tstr, "release": uint,  ; 0: none set
                                         ? "oscore": bstr}},  ; sealed key material
               "releases": [* uint],  ; releases the gateway must hold
               "rollout": null / rollout,
               "config": {* tstr => scalar}}
    rollout = {"id": tstr, "release": uint, "revert": uint, "state": tstr, "reason": tstr/null,
               "waves": [* {"boards": [* board_id], "soak_s": uint}],
               "passed": int,         ; highest wave the fleet saw pass fleet-wide, -1 none
               "window": null / [uint, uint],  ; UTC minutes of the day [start, end)
               "limits": {"failures": float, "confirm_s": uint, "silent_s": uint,
                          "reboots": uint}}
    command = {"type": "command", "v": 1, "site": tstr, "gateway": tstr,
               "id": bstr .size 16,   ; a nonce: a gateway runs each id at most once
               "issued": uint, "expires": uint,  ; Unix seconds
               "action": "reboot" / "log" / "reload" / "ping" / "power_cycle" / "bootloader",
               "board": tstr / null, "args": {* tstr => scalar}}

:func:`verify_envelope` checks, in order, and raises :class:`ControlRefused` with the first
reason that applies: the envelope's form (``malformed``); that ``signed`` is a COSE_Sign1 at
all (``unsigned``); the certificate chains to the root (``untrusted_key``), is for role
operator and valid ``now`` (``expired_cert``); the revocation list is the root's, not older
than one seen (``stale``) and does not list the operator key (``revoked``); the signature is
the certified key's (``bad_signature``); the payload's form (``malformed``) and that it names
this gateway (``wrong_gateway``). Whether a document's seq is new, a command's nonce unseen
and its expiry sane (``replayed``, ``stale``, ``expired``, ``too_far``) needs the gateway's
stored state: :func:`check_command_time` is the pure part, ``gateway.control.apply`` the rest.

**Gateway -> fleet** (state, events, replies) is a COSE_Sign1 by the gateway's own batch key
(``gateway.batches.keys``), which the fleet learnt when the gateway was added; see
:func:`sign_up` and :func:`verify_up`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.certs import ROLE_OPERATOR, verify_certificate, verify_revocations
from fleet.errors import BadRevocations, CertificateExpired, ReleaseRefused
from gateway.codec import cose
from gateway.codec.senml import is_board_id
from gateway.errors import ControlRefused, GatewayError

FORMAT_VERSION: Final = 1
#: The largest envelope or up message accepted (a document for a few thousand boards is
#: a few hundred kB, a gateway's state with 5,000 boards' health a few MB); anything longer
#: is refused before it is parsed.
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
NONCE_BYTES: Final = 16
ACTIONS: Final = ("reboot", "log", "reload", "ping", "power_cycle", "bootloader")
#: Actions the gateway carries out on a board's EN and IO0 lines (``gateway.pi.lines``);
#: ``reboot`` instead asks the board itself, at its next contact.
LINE_ACTIONS: Final = ("power_cycle", "bootloader")
#: Actions that name a board.
BOARD_ACTIONS: Final = ("reboot", "log", *LINE_ACTIONS)
ROLLOUT_STATES: Final = ("running", "paused", "halted", "aborted", "done")
UP_TYPES: Final = ("state", "events", "reply")
REFUSAL_REASONS: Final = (
    "malformed",
    "unsigned",
    "bad_signature",
    "untrusted_key",
    "expired_cert",
    "revoked",
    "wrong_gateway",
    "replayed",
    "stale",
    "expired",
    "too_far",
    "sealed_key",
)
#: How far a command's ``issued`` may be ahead of the gateway's clock (clocks drift).
CLOCK_SKEW_S: Final = 300

_ENVELOPE_FIELDS: Final = frozenset({"cert", "revocations", "signed"})
_DESIRED_FIELDS: Final = frozenset(
    {"type", "v", "site", "gateway", "seq", "issued", "boards", "releases", "rollout", "config"}
)
_COMMAND_FIELDS: Final = frozenset(
    {"type", "v", "site", "gateway", "id", "issued", "expires", "action", "board", "args"}
)
_ROLLOUT_FIELDS: Final = frozenset(
    {"id", "release", "revert", "state", "reason", "waves", "passed", "window", "limits"}
)
_LIMIT_FIELDS: Final = frozenset({"failures", "confirm_s", "silent_s", "reboots"})
_MAX_TEXT: Final = 256


# --- payloads ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardEntry:
    """An enrolled board in a desired-state document."""

    kind: str
    #: The release it should run outside a rollout (0: none set).
    release: int = 0
    #: The board's OSCORE key material sealed to this gateway (``gateway.oscore.seal``);
    #: None: the board's keys come from elsewhere (a keys file).
    oscore: bytes | None = None


@dataclass(frozen=True, slots=True)
class Wave:
    """This gateway's boards in one wave of a rollout, and how long the wave soaks."""

    boards: tuple[str, ...]
    soak_s: int


@dataclass(frozen=True, slots=True)
class Limits:
    """When a gateway halts a rollout on its own evidence."""

    #: Fraction (0..1) of a wave's boards that may fail before the rollout halts.
    failures: float = 0.0
    #: Seconds a board has, from its wave's start, to confirm the release.
    confirm_s: int = 3600
    #: Seconds without a health report, after the update, that count as silence.
    silent_s: int = 1800
    #: Reboots after confirming that make the release worse (0: not checked).
    reboots: int = 3


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """The part of a rollout that concerns one gateway."""

    id: str
    release: int
    #: The previous release's files re-signed under a later seq: boards that ran ``release``
    #: go to it on a halt or abort (a board never installs a lower seq than it ran).
    revert: int
    state: str
    waves: tuple[Wave, ...]
    limits: Limits = field(default_factory=Limits)
    reason: str | None = None
    passed: int = -1
    window: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Desired:
    """A desired-state document: what the fleet wants of one gateway."""

    site: str
    gateway: str
    seq: int
    issued: int
    boards: Mapping[str, BoardEntry]
    releases: tuple[int, ...] = ()
    rollout: RolloutPlan | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        rollout = None
        if self.rollout is not None:
            plan = self.rollout
            rollout = {
                "id": plan.id,
                "release": plan.release,
                "revert": plan.revert,
                "state": plan.state,
                "reason": plan.reason,
                "waves": [{"boards": list(w.boards), "soak_s": w.soak_s} for w in plan.waves],
                "passed": plan.passed,
                "window": None if plan.window is None else list(plan.window),
                "limits": {
                    "failures": float(plan.limits.failures),
                    "confirm_s": plan.limits.confirm_s,
                    "silent_s": plan.limits.silent_s,
                    "reboots": plan.limits.reboots,
                },
            }
        return {
            "type": "desired",
            "v": FORMAT_VERSION,
            "site": self.site,
            "gateway": self.gateway,
            "seq": self.seq,
            "issued": self.issued,
            "boards": {board: _board_entry(entry) for board, entry in sorted(self.boards.items())},
            "releases": sorted(set(self.releases)),
            "rollout": rollout,
            "config": dict(self.config),
        }


@dataclass(frozen=True, slots=True)
class Command:
    """A command to one gateway (and perhaps one of its boards)."""

    site: str
    gateway: str
    id: bytes
    issued: int
    expires: int
    action: str
    board: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {
            "type": "command",
            "v": FORMAT_VERSION,
            "site": self.site,
            "gateway": self.gateway,
            "id": self.id,
            "issued": self.issued,
            "expires": self.expires,
            "action": self.action,
            "board": self.board,
            "args": dict(self.args),
        }


@dataclass(frozen=True, slots=True)
class Verified:
    """An envelope whose chain and signature verified, and its decoded payload."""

    #: ``"desired"`` or ``"command"``.
    kind: str
    message: Desired | Command
    #: The operator key's kid.
    operator: bytes
    #: The revocation list it carried: its seq and its bytes (a gateway keeps the newest).
    revocations_seq: int
    revocations: bytes
    encoded: bytes


# --- fleet -> gateway ----------------------------------------------------------------------


def envelope(
    key: Ed25519PrivateKey, certificate: bytes, revocations: bytes, message: Desired | Command
) -> bytes:
    """``message`` signed by the operator ``key``, with its certificate and the revocation list."""
    kid = cose.key_id(cose.public_bytes(key))
    signed = cose.sign(key, bytes(cbor2.dumps(message.payload())), kid=kid)
    return bytes(cbor2.dumps({"cert": certificate, "revocations": revocations, "signed": signed}))


def verify_envelope(
    data: bytes,
    root: bytes,
    *,
    now: int,
    revocations_seen: int,
    site: str,
    gateway: str,
) -> Verified:
    """The document or command in the envelope ``data`` if it verifies for this gateway
    (``site``, ``gateway``) under the ``root`` public key at ``now`` (Unix seconds), given the
    newest revocation list seen (``revocations_seen``, its seq); else :class:`ControlRefused`."""
    if not isinstance(data, bytes) or len(data) > MAX_MESSAGE_BYTES:
        raise ControlRefused("malformed", "control message: not bytes, or too large")
    try:
        outer = cose.loads(data, "control envelope")
    except cose.CoseError as exc:
        raise ControlRefused("malformed", str(exc)) from None
    if not isinstance(outer, dict) or set(outer) != _ENVELOPE_FIELDS:
        raise ControlRefused(
            "unsigned", "control message is not an envelope of cert, revocations and signed"
        )
    cert_bytes, list_bytes, signed = outer["cert"], outer["revocations"], outer["signed"]
    if not all(isinstance(b, bytes) for b in (cert_bytes, list_bytes, signed)):
        raise ControlRefused("malformed", "control envelope: a field is not a byte string")
    try:
        message = cose.decode(signed)
    except cose.CoseError as exc:
        raise ControlRefused("unsigned", f"control message is not signed: {exc}") from None
    try:
        cert = verify_certificate(cert_bytes, root, role=ROLE_OPERATOR, now=now)
    except CertificateExpired as exc:
        raise ControlRefused("expired_cert", str(exc)) from None
    except (ReleaseRefused, GatewayError, ValueError) as exc:
        raise ControlRefused("untrusted_key", f"operator certificate: {exc}") from None
    try:
        revocations = verify_revocations(list_bytes, root, seen=revocations_seen)
    except BadRevocations as exc:
        why = "stale" if "older than" in str(exc) else "untrusted_key"
        raise ControlRefused(why, str(exc)) from None
    if cert.kid in revocations.revoked:
        raise ControlRefused("revoked", f"operator key {cert.kid.hex()} is revoked")
    if message.kid != cert.kid:
        raise ControlRefused(
            "bad_signature", "control message is not signed by the certified operator key"
        )
    try:
        _, payload_bytes = cose.verify(signed, cert.key)
    except GatewayError as exc:
        raise ControlRefused("bad_signature", str(exc)) from None
    try:
        payload = cose.loads(payload_bytes, "control payload")
    except cose.CoseError as exc:
        raise ControlRefused("malformed", str(exc)) from None
    decoded = decode_payload(payload)
    if decoded.site != site or decoded.gateway != gateway:
        raise ControlRefused(
            "wrong_gateway",
            f"control message is for {decoded.site}/{decoded.gateway}, not {site}/{gateway}",
        )
    kind = "desired" if isinstance(decoded, Desired) else "command"
    return Verified(kind, decoded, cert.kid, revocations.seq, list_bytes, data)


def check_command_time(command: Command, *, now: int, max_ttl_s: int) -> None:
    """:class:`ControlRefused` if ``command`` has expired at ``now``, was issued in the future,
    or expires more than ``max_ttl_s`` ahead (its nonce would have to be kept that long)."""
    if command.expires <= now:
        raise ControlRefused("expired", f"command expired at {command.expires}, now {now}")
    if command.issued > now + CLOCK_SKEW_S:
        raise ControlRefused("too_far", f"command issued at {command.issued}, in the future")
    if command.expires > now + max_ttl_s:
        raise ControlRefused(
            "too_far", f"command expires {command.expires - now} s ahead, over {max_ttl_s} s"
        )


def decode_payload(payload: object) -> Desired | Command:
    """A document or command from its decoded CBOR payload; ``malformed`` otherwise."""
    if not isinstance(payload, dict):
        raise ControlRefused("malformed", "control payload is not a map")
    kind = payload.get("type")
    if kind == "desired":
        return _desired(payload)
    if kind == "command":
        return _command(payload)
    raise ControlRefused("malformed", f"control payload of type {kind!r}")


def _board_entry(entry: BoardEntry) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": entry.kind, "release": entry.release}
    if entry.oscore is not None:
        body["oscore"] = entry.oscore
    return body


def _desired(body: dict[Any, Any]) -> Desired:
    _fields(body, _DESIRED_FIELDS, "desired-state document")
    boards_raw = body["boards"]
    if not isinstance(boards_raw, dict):
        raise _bad("boards is not a map")
    boards: dict[str, BoardEntry] = {}
    for board, entry in boards_raw.items():
        if not is_board_id(board):
            raise _bad(f"board id {board!r:.40} is not valid")
        if not isinstance(entry, dict) or set(entry) - {"oscore"} != {"kind", "release"}:
            raise _bad(f"board {board}: not a map of kind, release and perhaps oscore")
        sealed = entry.get("oscore")
        if sealed is not None and not isinstance(sealed, bytes):
            raise _bad(f"board {board}: oscore is not a byte string")
        boards[board] = BoardEntry(_text(entry, "kind"), _uint(entry, "release"), sealed)
    releases = body["releases"]
    if not isinstance(releases, list) or not all(_is_uint(r) for r in releases):
        raise _bad("releases is not a list of unsigned integers")
    config = body["config"]
    if not isinstance(config, dict) or not all(
        isinstance(k, str) and _is_scalar(v) for k, v in config.items()
    ):
        raise _bad("config is not a map of names to scalars")
    rollout = None if body["rollout"] is None else _rollout(body["rollout"])
    return Desired(
        site=_text(body, "site"),
        gateway=_text(body, "gateway"),
        seq=_uint(body, "seq"),
        issued=_uint(body, "issued"),
        boards=boards,
        releases=tuple(releases),
        rollout=rollout,
        config=config,
    )


def _rollout(raw: object) -> RolloutPlan:
    if not isinstance(raw, dict) or set(raw) != _ROLLOUT_FIELDS:
        raise _bad("rollout is not a map of " + ", ".join(sorted(_ROLLOUT_FIELDS)))
    state = _text(raw, "state")
    if state not in ROLLOUT_STATES:
        raise _bad(f"rollout state {state!r}")
    waves_raw = raw["waves"]
    if not isinstance(waves_raw, list):
        raise _bad("rollout waves is not a list")
    waves = []
    for wave in waves_raw:
        if not isinstance(wave, dict) or set(wave) != {"boards", "soak_s"}:
            raise _bad("a wave is not a map of boards and soak_s")
        members = wave["boards"]
        if not isinstance(members, list) or not all(is_board_id(b) for b in members):
            raise _bad("a wave's boards is not a list of board ids")
        waves.append(Wave(tuple(members), _uint(wave, "soak_s")))
    limits_raw = raw["limits"]
    if not isinstance(limits_raw, dict) or set(limits_raw) != _LIMIT_FIELDS:
        raise _bad("rollout limits is not a map of " + ", ".join(sorted(_LIMIT_FIELDS)))
    failures = limits_raw["failures"]
    if (
        not isinstance(failures, float | int)
        or isinstance(failures, bool)
        or not math.isfinite(failures)
        or not 0 <= failures <= 1
    ):
        raise _bad("rollout limits: failures is not a fraction between 0 and 1")
    limits = Limits(
        float(failures),
        _uint(limits_raw, "confirm_s"),
        _uint(limits_raw, "silent_s"),
        _uint(limits_raw, "reboots"),
    )
    window_raw = raw["window"]
    window = None
    if window_raw is not None:
        if (
            not isinstance(window_raw, list)
            or len(window_raw) != 2
            or not all(_is_uint(m) and m <= 1440 for m in window_raw)
        ):
            raise _bad("rollout window is not [start, end] in minutes of the day")
        window = (int(window_raw[0]), int(window_raw[1]))
    reason = raw["reason"]
    if reason is not None and not isinstance(reason, str):
        raise _bad("rollout reason is not text")
    passed = raw["passed"]
    if type(passed) is not int or passed < -1:
        raise _bad("rollout passed is not an integer of -1 or more")
    return RolloutPlan(
        id=_text(raw, "id"),
        release=_uint(raw, "release"),
        revert=_uint(raw, "revert"),
        state=state,
        waves=tuple(waves),
        limits=limits,
        reason=reason,
        passed=passed,
        window=window,
    )


def _command(body: dict[Any, Any]) -> Command:
    _fields(body, _COMMAND_FIELDS, "command")
    nonce = body["id"]
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise _bad(f"command id is not {NONCE_BYTES} bytes")
    action = _text(body, "action")
    if action not in ACTIONS:
        raise _bad(f"command action {action!r}, not one of {', '.join(ACTIONS)}")
    board = body["board"]
    if board is not None and not is_board_id(board):
        raise _bad("command board is not a board id")
    args = body["args"]
    if not isinstance(args, dict) or not all(
        isinstance(k, str) and _is_scalar(v) for k, v in args.items()
    ):
        raise _bad("command args is not a map of names to scalars")
    return Command(
        site=_text(body, "site"),
        gateway=_text(body, "gateway"),
        id=nonce,
        issued=_uint(body, "issued"),
        expires=_uint(body, "expires"),
        action=action,
        board=board,
        args=args,
    )


# --- gateway -> fleet -----------------------------------------------------------------------


def sign_up(key: Ed25519PrivateKey, payload: Mapping[str, Any]) -> bytes:
    """A state, events or reply ``payload`` signed by the gateway's ``key``."""
    if payload.get("type") not in UP_TYPES:
        raise ValueError(f"an up message's type is one of {', '.join(UP_TYPES)}")
    kid = cose.key_id(cose.public_bytes(key))
    return cose.sign(key, bytes(cbor2.dumps(dict(payload))), kid=kid)


def verify_up(data: bytes, keys: cose.PublicKeys, *, site: str, gateway: str) -> dict[str, Any]:
    """The payload of a gateway's up message if one of ``keys`` (the gateway's) signed it and
    it names that gateway; :class:`ControlRefused` otherwise."""
    if not isinstance(data, bytes) or len(data) > MAX_MESSAGE_BYTES:
        raise ControlRefused("malformed", "up message: not bytes, or too large")
    try:
        _, payload_bytes = cose.verify(data, keys)
        payload = cose.loads(payload_bytes, "up message")
    except cose.CoseError as exc:
        raise ControlRefused("unsigned", str(exc)) from None
    except LookupError as exc:
        raise ControlRefused("untrusted_key", str(exc)) from None
    except GatewayError as exc:
        raise ControlRefused("bad_signature", str(exc)) from None
    if not isinstance(payload, dict) or payload.get("type") not in UP_TYPES:
        raise ControlRefused("malformed", "up message is not a state, events or reply map")
    if payload.get("v") != FORMAT_VERSION:
        raise ControlRefused("malformed", f"up message version {payload.get('v')!r}")
    if payload.get("site") != site or payload.get("gateway") != gateway:
        raise ControlRefused(
            "wrong_gateway",
            f"up message names {payload.get('site')!r}/{payload.get('gateway')!r},"
            f" not {site}/{gateway}",
        )
    return payload


# --- strict fields -------------------------------------------------------------------------


def _bad(message: str) -> ControlRefused:
    return ControlRefused("malformed", f"control payload: {message}")


def _fields(body: dict[Any, Any], fields: frozenset[str], what: str) -> None:
    unknown = sorted(repr(k) for k in body if k not in fields)
    if unknown:
        raise _bad(f"{what}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(k for k in fields if k not in body)
    if missing:
        raise _bad(f"{what}: lacks {', '.join(missing)}")
    if type(body["v"]) is not int or body["v"] != FORMAT_VERSION:
        raise _bad(f"{what}: format version {body['v']!r}, not {FORMAT_VERSION}")


def _is_uint(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**63


def _uint(body: Mapping[Any, Any], key: str) -> int:
    value = body[key]
    if not _is_uint(value):
        raise _bad(f"{key} is not an unsigned integer")
    return int(value)


def _text(body: Mapping[Any, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT:
        raise _bad(f"{key} is not text of 1 to {_MAX_TEXT} characters")
    return value


def _is_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int | str)


__all__ = [
    "ACTIONS",
    "BOARD_ACTIONS",
    "LINE_ACTIONS",
    "MAX_MESSAGE_BYTES",
    "REFUSAL_REASONS",
    "BoardEntry",
    "Command",
    "ControlRefused",
    "Desired",
    "Limits",
    "RolloutPlan",
    "Verified",
    "Wave",
    "check_command_time",
    "decode_payload",
    "envelope",
    "sign_up",
    "verify_envelope",
    "verify_up",
]
