"""The gateway's CoAP endpoints: one aiocoap ``Resource`` per path, the tree in :func:`build_site`.

The resources only translate between CoAP messages and the plain functions in
:mod:`gateway.intake.requests`, and hand what they accept to the writer process through
:class:`gateway.intake.writer_link.WriterLink`; errors are :mod:`gateway.errors` exceptions,
answered as responses by :mod:`gateway.intake.responses` (code plus diagnostic payload) and
counted by reason on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar, Final

from aiocoap import CHANGED, CONTENT, CONTINUE, UNAUTHORIZED, Message
from aiocoap import error as coap_error
from aiocoap.resource import Resource, Site, WKCResource

from gateway.config import LimitsConfig
from gateway.errors import (
    BadQuery,
    BoardMismatch,
    GatewayError,
    MethodNotAllowed,
    NotProtected,
    OutboxFull,
    PeerBusy,
    StoreUnavailable,
    Unauthorized,
    UnknownPath,
)
from gateway.intake.blockwise import Block1Spool
from gateway.intake.echo import AddressCheck
from gateway.intake.gate import AMPLIFICATION, Gate
from gateway.intake.requests import (
    HEALTH_FORMATS,
    JSON,
    READINGS_FORMATS,
    Counters,
    check_readings_format,
    check_size,
    decode_health,
    parse_sequence_query,
)
from gateway.intake.responses import Refusal, error_response
from gateway.intake.writer_link import WriterLink
from gateway.oscore.keys import KeyMaterial, encode_board_file
from gateway.ota.hints import CBOR as HINT_FORMAT
from gateway.ota.hints import UpdateHints, encode_hint
from gateway.ota.serve import MAX_SZX, ReleaseFiles, block
from gateway.store.schema import now_ms

_WKC: Final = (".well-known", "core")


class Admission:
    """Which requests are being handled, so that a stop can let them finish first.

    After :meth:`close`, new requests get 5.03 (the board retries later, perhaps to
    the restarted gateway) while those already in hand still get their answer.
    """

    def __init__(self, max_per_peer: int = 64) -> None:
        self.open = True
        self.in_flight = 0
        self.max_per_peer = max_per_peer
        self._by_peer: Counter[str] = Counter()
        #: Set while the outbox is over its disk budget under the ``refuse`` policy: new
        #: readings get 5.03 with Max-Age ``retry_after_s`` (boards keep them meanwhile).
        self.outbox_full = False
        self.retry_after_s = 60
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self, peer: str) -> None:
        if not self.open:
            raise StoreUnavailable("gateway is stopping; retry later")
        if self._by_peer[peer] >= self.max_per_peer:
            raise PeerBusy(f"{self.max_per_peer} requests of yours are waiting; retry later")
        self._by_peer[peer] += 1
        self.in_flight += 1
        self._idle.clear()

    def leave(self, peer: str) -> None:
        self._by_peer[peer] -= 1
        if self._by_peer[peer] <= 0:
            del self._by_peer[peer]
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def close(self, timeout_s: float) -> None:
        """Refuse new requests and wait (at most ``timeout_s``) for those in hand."""
        self.open = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)


def _content_format(request: Message) -> int | None:
    cf = request.opt.content_format
    return None if cf is None else int(cf)


def _peer(request: Message) -> str:
    """The peer (host and port, as the gate counts sources): what per-peer limits count by."""
    return _address(request) or "?"


def _budget(request: Message) -> int:
    """The most bytes an answer to ``request`` may take besides its token (no amplification)."""
    payload = len(request.payload)
    size = 4 + len(request.token) + len(request.opt.encode()) + (payload + 1 if payload else 0)
    return max(AMPLIFICATION * size, 24) - len(request.token)


def board_of(request: Message) -> str | None:
    """The board whose OSCORE keys protected ``request`` (aiocoap's site wrapper sets its
    remote to an ``OSCOREAddress``), or None for a plain CoAP request."""
    context = getattr(request.remote, "security_context", None)
    board: str | None = getattr(context, "board_id", None)
    return board


def handover(request: Message) -> KeyMaterial | None:
    """The new key material to hand the board whose old key protected ``request`` (see
    ``BoardContext.handover``); None for every other request, plain CoAP included."""
    context = getattr(request.remote, "security_context", None)
    pending = getattr(context, "handover", None)
    material: KeyMaterial | None = pending() if pending is not None else None
    return material


def _address(request: Message) -> str | None:
    """The peer as ``host:port`` (IPv4-mapped addresses shown as IPv4)."""
    remote = getattr(request.remote, "underlying_address", None) or request.remote
    sockaddr = getattr(remote, "sockaddr", None)  # UDP: cheaper than .hostinfo
    if sockaddr is None:
        try:
            return str(remote.hostinfo)
        except Exception:  # some transports cannot name their peer; it is informative only
            return None
    host: str = sockaddr[0].removeprefix("::ffff:")
    return f"[{host}]:{sockaddr[1]}" if ":" in host else f"{host}:{sockaddr[1]}"


class _IntakeResource(Resource):  # type: ignore[misc]
    """Common ground of the POST-only intake endpoints: size guard, refusal counting."""

    path: ClassVar[str]
    allowed: ClassVar[str] = "POST"
    #: Listed in ``/.well-known/core``: only when anonymous peers may use it (lab flag).
    listed = True

    def __init__(
        self,
        writer: WriterLink,
        limits: LimitsConfig,
        counters: Counters,
        admission: Admission,
        spool: Block1Spool,
        hints: UpdateHints | None = None,
    ) -> None:
        super().__init__()
        self._hints = hints
        self._writer = writer
        self._limits = limits
        self._counters = counters
        self._admission = admission
        self._spool = spool

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False  # Block1 is assembled here, within bounds (gateway.intake.blockwise)

    def get_link_description(self) -> dict[str, Any] | None:
        return super().get_link_description() if self.listed else None

    async def render(self, request: Message) -> Message:
        peer = _peer(request)
        block1 = request.opt.block1
        try:
            if block1 is not None:
                body = self._spool.feed(
                    peer,
                    self.path,
                    number=block1.block_number,
                    more=block1.more,
                    szx=block1.size_exponent,
                    payload=request.payload,
                    size1=request.opt.size1,
                )
                if body is None:
                    return Message(code=CONTINUE, block1=block1)
                request = request.copy(payload=body)
            self._admission.enter(peer)
            try:
                response: Message = await super().render(request)
            finally:
                self._admission.leave(peer)
        except coap_error.MethodNotAllowed:
            self._counters.refused[MethodNotAllowed.reason] += 1
            return error_response(
                MethodNotAllowed(f"{request.code} not allowed on {self.path}; use {self.allowed}"),
                budget=_budget(request),
            )
        except GatewayError as exc:
            self._counters.refused[exc.reason] += 1
            return error_response(exc, budget=_budget(request) if block1 is None else None)
        if block1 is not None:
            response.opt.block1 = block1  # the whole body was processed (RFC 7959 §2.3)
        return response


class ReadingsResource(_IntakeResource):
    """``POST /readings``: a SenML pack from a board; 2.04 once it is committed."""

    path = "/readings"
    rt = "simpul.readings"
    ct = " ".join(str(cf) for cf in READINGS_FORMATS)

    async def render_post(self, request: Message) -> Message:
        if self._admission.outbox_full:
            raise OutboxFull(
                "outbox is at its disk budget; keep the readings and retry after Max-Age",
                retry_after_s=self._admission.retry_after_s,
            )
        payload = request.payload
        check_size(len(payload), self._limits)
        queries = request.opt.uri_query
        seq = parse_sequence_query(queries) if queries else None
        await self._writer.submit_readings(
            payload,
            check_readings_format(_content_format(request)),
            seq=seq,
            address=_address(request),
            received_ms=now_ms(),
            board=board_of(request),
        )
        hint = {} if self._hints is None else self._hints.fields_for_address(_address(request))
        return _changed(request, hint)


class HealthResource(_IntakeResource):
    """``POST /health``: a board's health report (CBOR or JSON map); 2.04 once committed."""

    path = "/health"
    rt = "simpul.health"
    ct = " ".join(str(cf) for cf in HEALTH_FORMATS)

    async def render_post(self, request: Message) -> Message:
        check_size(len(request.payload), self._limits)
        board_id, report = decode_health(request.payload, _content_format(request))
        board = board_of(request)
        if board is not None and board != board_id:
            raise BoardMismatch(f"keys of {board} cannot send the health of {board_id[:40]!r}")
        address = _address(request)
        await self._writer.submit_health(board_id, report, address=address, received_ms=now_ms())
        if self._hints is None:
            return _changed(request, {})
        self._hints.saw_health(board_id, address, report)
        return _changed(request, self._hints.fields(board_id))


def _changed(request: Message, hint: dict[str, Any]) -> Message:
    """2.04, with the hint when one is due (``{"ota": seq}``, ``{"reboot": 1}``,
    gateway.ota.hints) and, to a board whose request its old OSCORE key protected while the
    gateway holds a new one, ``{"key": <board file>}`` (gateway.oscore.contexts): that answer
    is protected under the old key, the only one the board can read."""
    material = handover(request)
    if material is not None:
        hint = {**hint, "key": encode_board_file(material).decode()}
    payload = encode_hint(hint)
    if payload is None:
        return Message(code=CHANGED)
    return Message(code=CHANGED, payload=payload, content_format=HINT_FORMAT)


class GatewayHealthResource(Resource):  # type: ignore[misc]
    """``GET /gateway``: the gateway's own health as JSON (what ``Gateway.stats()`` says).

    To enrolled boards (OSCORE) and, with the lab flag ``limits.open_gateway_stats``, to
    anyone; anyone else gets 4.01, and the resource is not listed.
    """

    rt = "simpul.gateway"
    ct = str(JSON)

    def __init__(self, stats: Callable[[], dict[str, Any]], *, open_to_all: bool) -> None:
        super().__init__()
        self._stats = stats
        self._open = open_to_all

    def get_link_description(self) -> dict[str, Any] | None:
        return super().get_link_description() if self._open else None

    async def render_get(self, request: Message) -> Message:
        if not self._open and board_of(request) is None:
            return error_response(
                Unauthorized("the gateway's statistics are for its operators"),
                budget=_budget(request),
            )
        body = json.dumps(self._stats(), separators=(",", ":")).encode()
        return Message(code=CONTENT, payload=body, content_format=JSON)


class CoreResource(WKCResource):  # type: ignore[misc]
    """``GET /.well-known/core`` (RFC 6690), block by block within the amplification budget.

    Asked without Block2, the list would be several times the request's size; the answer
    is its first block of a size that fits the budget, and the client asks for the rest
    (RFC 7959 §2.4).
    """

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False

    async def render_get(self, request: Message) -> Message:
        whole: Message = await super().render_get(request)
        budget = _budget(request) - 16  # header, token, Content-Format and Block2 options
        block2 = request.opt.block2
        szx = 6
        while szx > 0 and (1 << (szx + 4)) > budget:
            szx -= 1
        number = 0
        if block2 is not None:
            szx = min(szx, block2.size_exponent)
            number = block2.start >> (szx + 4)
        size = 1 << (szx + 4)
        start = number * size
        if start >= len(whole.payload) and start > 0:
            return error_response(BadQuery("Block2 beyond the end"), budget=_budget(request))
        more = start + size < len(whole.payload)
        whole.payload = whole.payload[start : start + size]
        whole.opt.block2 = (number, more, szx)
        return whole


class OtaResource(Resource):  # type: ignore[misc]
    """``GET /ota/<seq>/manifest`` and ``GET /ota/<seq>/<file>``: cached releases, block-wise.

    Blocks are at most 1024 bytes (Block2, RFC 7959), smaller when the client asks; every
    answer carries the content's ETag (first 8 bytes of its SHA-256), so a board resuming a
    download after a reset sees whether the content is still the one it began, and Size2.
    What a path names comes from :class:`gateway.ota.serve.ReleaseFiles`.

    A block is far larger than the request for it, so a host gets blocks only once it has
    shown it receives what is sent to it: first 4.01 with an Echo option, then blocks when
    it repeats the Echo (RFC 9175 §2.4, :mod:`gateway.intake.echo`).
    """

    rt = "simpul.ota"
    listed = True

    def get_link_description(self) -> dict[str, Any] | None:
        return super().get_link_description() if self.listed else None

    def __init__(
        self, files: ReleaseFiles, counters: Counters, addresses: AddressCheck | None = None
    ) -> None:
        super().__init__()
        self._files = files
        self._counters = counters
        self._addresses = addresses or AddressCheck()

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False  # blocks are cut here, from content kept whole

    async def render_get(self, request: Message) -> Message:
        host = _peer(request).rsplit(":", 1)[0]
        # A request an enrolled board protected is fresh (OSCORE's replay window): no need to
        # check that its address answers.
        if board_of(request) is None and not self._addresses.verified(host, request.opt.echo):
            self._counters.refused["echo_challenge"] += 1
            challenge = Message(code=UNAUTHORIZED)
            challenge.opt.echo = self._addresses.challenge(host)
            return challenge
        try:
            content = self._files.content(tuple(request.opt.uri_path[1:]))
            block2 = request.opt.block2
            szx, number = MAX_SZX, 0
            if block2 is not None:
                szx = min(MAX_SZX, block2.size_exponent)
                number = block2.start >> (szx + 4)
            payload, more = block(content, number, szx)
        except GatewayError as exc:
            self._counters.refused[exc.reason] += 1
            return error_response(exc, budget=_budget(request))
        response = Message(code=CONTENT, payload=payload)
        response.opt.content_format = content.content_format
        response.opt.etag = content.etag
        response.opt.block2 = (number, more, szx)
        response.opt.size2 = len(content.data)
        return response


class GatewaySite(Site):  # type: ignore[misc]
    """The root: dispatches by exact path, answers unknown paths with a diagnostic.

    Every resource here lives at a fixed path and ignores its path, so the request goes
    to it as it is; aiocoap's ``Site`` would copy each request to strip the path first,
    which is a large part of its per-request cost.
    """

    def __init__(self, counters: Counters, *, plain_coap: bool = True) -> None:
        super().__init__()
        self._counters = counters
        #: Lab flag (``security.plain_coap``): serve unprotected requests too.
        self.plain_coap = plain_coap
        self._by_path: dict[tuple[str, ...], Any] = {}
        #: Resources that take every path below their first segment (``/ota/...``).
        self._by_prefix: dict[str, Any] = {}
        #: What the server context builds its transport with (gateway.daemon.ServerContext).
        self.gate: Gate | None = None
        self.max_dedup_entries = 10_000

    def add_resource(self, path: tuple[str, ...], resource: Any) -> None:
        super().add_resource(path, resource)
        self._by_path[tuple(path)] = resource

    def add_prefix_resource(self, segment: str, resource: Any) -> None:
        """``resource`` answers ``/segment`` and every path below it."""
        self.add_resource((segment,), resource)
        self._by_prefix[segment] = resource

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        if not self.plain_coap and board_of(request) is None and request.opt.uri_path != _WKC:
            self._counters.refused[NotProtected.reason] += 1
            raise Refusal(NotProtected("protect requests with OSCORE (RFC 8613)"), _budget(request))
        if request.opt.uri_path_abbrev is None:
            path = request.opt.uri_path
            child = self._by_path.get(path)
            if child is None and path:
                child = self._by_prefix.get(path[0])
            if child is not None:
                await child.render_to_pipe(pipe)
                return
        try:
            await super().render_to_pipe(pipe)
        except coap_error.NotFound:
            self._counters.refused[UnknownPath.reason] += 1
            path = "/" + "/".join(pipe.request.opt.uri_path)
            raise Refusal(UnknownPath(f"no resource at {path}"), _budget(request)) from None


def build_site(
    writer: WriterLink,
    limits: LimitsConfig,
    counters: Counters,
    admission: Admission,
    stats: Callable[[], dict[str, Any]] | None = None,
    spool: Block1Spool | None = None,
    releases: ReleaseFiles | None = None,
    hints: UpdateHints | None = None,
    *,
    plain_coap: bool = True,
) -> Site:
    """The gateway's resource tree, ``/.well-known/core`` included (``/gateway`` with stats,
    ``/ota/...`` with cached releases). Without ``plain_coap``, only ``/.well-known/core``
    answers unprotected requests, and it lists nothing else."""
    site = GatewaySite(counters, plain_coap=plain_coap)
    if spool is None:
        spool = Block1Spool(
            max_bytes=limits.max_request_bytes, max_transfers=limits.max_block1_transfers
        )
    site.add_resource(
        (".well-known", "core"), CoreResource(site.get_resources_as_linkheader, impl_info=None)
    )
    for path, cls in (("readings", ReadingsResource), ("health", HealthResource)):
        resource = cls(writer, limits, counters, admission, spool, hints)
        resource.listed = plain_coap
        site.add_resource((path,), resource)
    if stats is not None:
        site.add_resource(
            ("gateway",), GatewayHealthResource(stats, open_to_all=limits.open_gateway_stats)
        )
    if releases is not None:
        ota = OtaResource(releases, counters)
        ota.listed = plain_coap
        site.add_prefix_resource("ota", ota)
    return site
