"""The writer process: decodes requests, commits them in groups, answers each one's outcome.

The CoAP server's event loop would otherwise share one interpreter lock with SenML decoding
and SQLite; in a process of its own, the writer uses the machine's other core. The two talk
over a Unix socket pair in compact frames:

* request ``[length][id][kind][content-format][received ms][seq first][seq count]
  [address length][board length] address board payload`` — the raw payload, so decoding
  happens here too; ``board`` is the board the request's OSCORE keys belong to (empty for
  plain CoAP), and a pack naming any other board is refused (:class:`BoardMismatch`);
* reply ``[length][id][stored][duplicates][hint][reason length] reason message`` — the
  reason is empty when the request was stored, else it names the :mod:`gateway.errors` class
  to raise, rebuilt from its message and hint (the Size1 or Max-Age its response carries).
  The writer's first reply, with id 0, says it is ready. A ping (kind 3, no payload) is
  answered once the group it arrived with is committed: the daemon's watchdog asks it, so a
  writer that hangs stops the watchdog (:mod:`gateway.service.notify`).

The writer takes every request that has arrived, decodes each (a bad one is refused on its
own and never reaches the store), commits the rest in one transaction
(:class:`gateway.store.schema.StoreWriter`), and only then writes all the group's replies in one
go. A 2.04 is therefore always sent after its readings are on disk. When the gateway's end of
the socket closes, the writer commits what it already read, answers, and exits.

No request stops the writer: decoding is total (a bad payload is a
:class:`~gateway.errors.GatewayError`), and should a decoder still raise something else, that
is the one request's :class:`~gateway.errors.DecodeFault` (4.00, counted, logged once per
kind) while the others are served. Frames come only from the gateway's own process; one that
does not parse (:class:`~gateway.errors.BadFrame`) means the stream cannot be trusted, so the
writer ends and the link starts a fresh one.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway import errors
from gateway.config import LimitsConfig
from gateway.errors import BadFrame, DecodeFault, GatewayError, StoreUnavailable
from gateway.intake.requests import check_board, decode_readings
from gateway.store.writer import (
    HealthJob,
    Job,
    Outcome,
    ReadingsJob,
    SequenceRange,
    StoreWriter,
)

KIND_READINGS: Final = 1
KIND_HEALTH: Final = 2
KIND_PING: Final = 3

#: length (of what follows), id, kind, content-format, received ms, seq first, seq count,
#: address length, board length. ``seq first`` is -1 when the request carries no sequence
#: numbers.
REQUEST_HEAD: Final = struct.Struct("<IIBHqqqHH")
#: length, id, stored, duplicates, hint (-1: none), reason length.
REPLY_HEAD: Final = struct.Struct("<IIIIqH")
#: The id of the reply the writer sends, unasked, once it has the database open.
READY_ID: Final = 0
#: Largest frame either side accepts: far above any request (limits.max_request_bytes).
MAX_FRAME_BYTES: Final = 64 << 20
_RECV_SIZE: Final = 1 << 20
#: Seconds between summary lines for a kind of decode fault already logged.
_FAULT_LOG_INTERVAL_S: Final = 60.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the writer receives it."""

    request_id: int
    kind: int
    content_format: int
    received_ms: int
    seq: SequenceRange | None
    address: str | None
    payload: bytes
    #: The board the request's OSCORE keys belong to; None for plain CoAP (lab only).
    board: str | None = None


def encode_request(
    request_id: int,
    kind: int,
    payload: bytes,
    *,
    content_format: int,
    received_ms: int,
    seq: SequenceRange | None,
    address: str | None,
    board: str | None = None,
) -> bytes:
    """One request frame."""
    addr = address.encode() if address is not None else b""
    who = board.encode() if board is not None else b""
    first, count = (seq.first, seq.count) if seq is not None else (-1, 0)
    length = REQUEST_HEAD.size - 4 + len(addr) + len(who) + len(payload)
    head = REQUEST_HEAD.pack(
        length, request_id, kind, content_format, received_ms, first, count, len(addr), len(who)
    )
    return b"".join((head, addr, who, payload))


def decode_requests(buffer: bytearray) -> tuple[list[Request], int]:
    """The complete request frames at the start of ``buffer``, and how many bytes they took.

    Raises :class:`BadFrame` if a frame cannot be one :func:`encode_request` made.
    """
    requests: list[Request] = []
    at, end = 0, len(buffer)
    unpack = REQUEST_HEAD.unpack_from
    while end - at >= REQUEST_HEAD.size:
        length, request_id, kind, cf, received, first, count, addr_len, who_len = unpack(buffer, at)
        if not REQUEST_HEAD.size - 4 + addr_len + who_len <= length <= MAX_FRAME_BYTES:
            raise BadFrame(f"request frame of {length} bytes with a {addr_len}-byte address")
        if first < -1 or count < 0 or (first == -1) != (count == 0):
            raise BadFrame(f"request frame with sequence range {first}, {count}")
        frame_end = at + 4 + length
        if frame_end > end:
            break
        addr_at = at + REQUEST_HEAD.size
        try:
            address = bytes(buffer[addr_at : addr_at + addr_len]).decode() if addr_len else None
            who_at = addr_at + addr_len
            board = bytes(buffer[who_at : who_at + who_len]).decode() if who_len else None
        except UnicodeDecodeError:
            raise BadFrame("request frame with an address or board that is not UTF-8") from None
        payload = bytes(buffer[who_at + who_len : frame_end])
        seq = SequenceRange(first, count) if first >= 0 else None
        requests.append(Request(request_id, kind, cf, received, seq, address, payload, board))
        at = frame_end
    return requests, at


def encode_reply(request_id: int, outcome: Outcome | GatewayError) -> bytes:
    """One reply frame."""
    if isinstance(outcome, GatewayError):
        reason = outcome.reason.encode()
        message = outcome.message.encode(errors="backslashreplace")[:200]
        hint = outcome.hint if outcome.hint is not None else -1
        length = REPLY_HEAD.size - 4 + len(reason) + len(message)
        return REPLY_HEAD.pack(length, request_id, 0, 0, hint, len(reason)) + reason + message
    stored, duplicates = (outcome.stored, outcome.duplicates) if outcome is not None else (0, 0)
    return REPLY_HEAD.pack(REPLY_HEAD.size - 4, request_id, stored, duplicates, -1, 0)


#: The error class to raise for each reason a reply can name.
ERRORS_BY_REASON: Final[dict[str, type[GatewayError]]] = {
    cls.reason: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, GatewayError) and cls is not GatewayError
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A request's outcome as the gateway receives it."""

    request_id: int
    stored: int
    duplicates: int
    error: GatewayError | None


def decode_replies(buffer: bytearray) -> tuple[list[Reply], int]:
    """The complete reply frames at the start of ``buffer``, and how many bytes they took.

    Raises :class:`BadFrame` if a frame cannot be one :func:`encode_reply` made.
    """
    replies: list[Reply] = []
    at, end = 0, len(buffer)
    unpack = REPLY_HEAD.unpack_from
    while end - at >= REPLY_HEAD.size:
        length, request_id, stored, duplicates, hint, reason_len = unpack(buffer, at)
        if not REPLY_HEAD.size - 4 + reason_len <= length <= MAX_FRAME_BYTES:
            raise BadFrame(f"reply frame of {length} bytes with a {reason_len}-byte reason")
        frame_end = at + 4 + length
        if frame_end > end:
            break
        error: GatewayError | None = None
        if reason_len:
            reason_at = at + REPLY_HEAD.size
            try:
                reason = bytes(buffer[reason_at : reason_at + reason_len]).decode()
            except UnicodeDecodeError:
                raise BadFrame("reply frame with a reason that is not UTF-8") from None
            message = bytes(buffer[reason_at + reason_len : frame_end]).decode(errors="replace")
            cls = ERRORS_BY_REASON.get(reason, StoreUnavailable)
            error = cls.rebuild(message, hint if hint >= 0 else None)
        replies.append(Reply(request_id, stored, duplicates, error))
        at = frame_end
    return replies, at


def _job(request: Request, limits: LimitsConfig) -> Job:
    """The store job for a request; raises a :class:`GatewayError` for a bad one."""
    if request.kind == KIND_READINGS:
        readings = decode_readings(
            request.payload, request.content_format, request.seq, request.received_ms, limits
        )
        if request.board is not None:
            check_board(readings, request.board)
        return ReadingsJob(readings, request.address, request.seq, request.received_ms)
    if request.kind == KIND_HEALTH:
        # Decoded and checked in the CoAP process already: "<board id>\n<health as JSON>".
        board_id, _, health_json = request.payload.decode().partition("\n")
        return HealthJob(board_id, health_json, request.address, request.received_ms)
    raise BadFrame(f"request of unknown kind {request.kind}")


class FaultLog:
    """Logs unexpected decode failures: each kind once in full, then a count now and then.

    A kind is the exception's type and where it was raised. The first of a kind is logged
    with its traceback (a gateway bug to fix); after that, whatever a peer keeps sending,
    at most one line per ``interval_s`` says how many more there were.
    """

    def __init__(
        self,
        logger: logging.Logger = log,
        *,
        interval_s: float = _FAULT_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        self._seen: set[tuple[str, str]] = set()
        self._unreported: Counter[tuple[str, str]] = Counter()
        self._last_summary = clock()
        #: Every fault since the process started, by kind.
        self.counts: Counter[tuple[str, str]] = Counter()

    def record(self, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        kind = (type(exc).__name__, where)
        self.counts[kind] += 1
        if kind not in self._seen:
            self._seen.add(kind)
            self._log.error(
                "decoding a request failed unexpectedly (%s at %s); answered 4.00. "
                "Logged once; more of this kind are counted",
                *kind,
                exc_info=exc,
            )
            return
        self._unreported[kind] += 1
        now = self._clock()
        if now - self._last_summary >= self._interval_s:
            self._last_summary = now
            summary = ", ".join(f"{n} x {k[0]} at {k[1]}" for k, n in self._unreported.items())
            self._unreported.clear()
            self._log.warning("more unexpected decode failures: %s", summary)


def serve(
    sock: socket.socket,
    db_path: Path,
    synchronous: str,
    limits: LimitsConfig,
    before_commit: Callable[[], None] | None = None,
) -> None:
    """The writer process's main loop (started by :class:`.writer_link.WriterLink`)."""
    faults = FaultLog()
    writer = StoreWriter(
        db_path,
        synchronous=synchronous,
        before_commit=before_commit,
        max_seq_jump=limits.max_seq_jump,
    )
    buffer = bytearray()
    try:
        sock.sendall(encode_reply(READY_ID, None))
        while True:
            closed = False
            chunk = sock.recv(_RECV_SIZE)
            if not chunk:
                closed = True
            else:
                buffer += chunk
                # Take everything that has arrived meanwhile: it all goes in one commit.
                sock.setblocking(False)
                try:
                    while chunk := sock.recv(_RECV_SIZE):
                        buffer += chunk
                    closed = True
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            requests, used = decode_requests(buffer)
            del buffer[:used]
            if requests:
                sock.sendall(_commit(writer, requests, limits, faults))
            if closed:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass  # the gateway is gone: nobody waits for an answer, what committed stands
    except BadFrame as exc:
        log.error("store writer: %s; restarting with a fresh stream", exc)
    finally:
        writer.close()
        sock.close()


def _commit(
    writer: StoreWriter, requests: list[Request], limits: LimitsConfig, faults: FaultLog
) -> bytes:
    """Decode, commit the good ones together, and return every request's reply."""
    replies: list[bytes] = []
    jobs: list[Job] = []
    ids: list[int] = []
    pings: list[int] = []
    for request in requests:
        if request.kind == KIND_PING:
            pings.append(request.request_id)
            continue
        try:
            job = _job(request, limits)
        except GatewayError as exc:
            replies.append(encode_reply(request.request_id, exc))
            continue
        except Exception as exc:  # a decoder bug: this request's error, never the writer's end
            faults.record(exc)
            fault = DecodeFault(f"payload could not be decoded ({type(exc).__name__})")
            replies.append(encode_reply(request.request_id, fault))
            continue
        jobs.append(job)
        ids.append(request.request_id)
    if jobs:
        outcomes = writer.commit(jobs)
        replies.extend(map(encode_reply, ids, outcomes))
    replies.extend(encode_reply(ping, None) for ping in pings)
    return b"".join(replies)
