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
from collections.abc import Callable
from typing import Any, ClassVar

from aiocoap import CHANGED, CONTENT, Message
from aiocoap import error as coap_error
from aiocoap.resource import Resource, Site, WKCResource

from gateway.config import LimitsConfig
from gateway.errors import (
    GatewayError,
    MethodNotAllowed,
    OutboxFull,
    StoreUnavailable,
    UnknownPath,
)
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
from gateway.store.schema import now_ms


class Admission:
    """Which requests are being handled, so that a stop can let them finish first.

    After :meth:`close`, new requests get 5.03 (the board retries later, perhaps to
    the restarted gateway) while those already in hand still get their answer.
    """

    def __init__(self) -> None:
        self.open = True
        self.in_flight = 0
        #: Set while the outbox is over its disk budget under the ``refuse`` policy: new
        #: readings get 5.03 with Max-Age ``retry_after_s`` (boards keep them meanwhile).
        self.outbox_full = False
        self.retry_after_s = 60
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        if not self.open:
            raise StoreUnavailable("gateway is stopping; retry later")
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
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


def _address(request: Message) -> str | None:
    """The peer as ``host:port`` (IPv4-mapped addresses shown as IPv4)."""
    sockaddr = getattr(request.remote, "sockaddr", None)  # UDP: cheaper than .hostinfo
    if sockaddr is None:
        try:
            return str(request.remote.hostinfo)
        except Exception:  # some transports cannot name their peer; it is informative only
            return None
    host: str = sockaddr[0].removeprefix("::ffff:")
    return f"[{host}]:{sockaddr[1]}" if ":" in host else f"{host}:{sockaddr[1]}"


class _IntakeResource(Resource):  # type: ignore[misc]
    """Common ground of the POST-only intake endpoints: size guard, refusal counting."""

    path: ClassVar[str]
    allowed: ClassVar[str] = "POST"

    def __init__(
        self, writer: WriterLink, limits: LimitsConfig, counters: Counters, admission: Admission
    ) -> None:
        super().__init__()
        self._writer = writer
        self._limits = limits
        self._counters = counters
        self._admission = admission

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        block1 = request.opt.block1
        if block1 is None:
            return False  # single datagram: skip aiocoap's reassembly bookkeeping
        # Refuse a Block1 transfer as soon as it announces or reaches more than we accept.
        try:
            check_size(
                max(request.opt.size1 or 0, block1.start + len(request.payload)), self._limits
            )
        except GatewayError as exc:
            self._counters.refused[exc.reason] += 1
            raise Refusal(exc) from None
        return True

    async def render(self, request: Message) -> Message:
        try:
            self._admission.enter()
            try:
                response: Message = await super().render(request)
            finally:
                self._admission.leave()
        except coap_error.MethodNotAllowed:
            self._counters.refused[MethodNotAllowed.reason] += 1
            return error_response(
                MethodNotAllowed(f"{request.code} not allowed on {self.path}; use {self.allowed}")
            )
        except GatewayError as exc:
            self._counters.refused[exc.reason] += 1
            return error_response(exc)
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
        )
        return Message(code=CHANGED)


class HealthResource(_IntakeResource):
    """``POST /health``: a board's health report (CBOR or JSON map); 2.04 once committed."""

    path = "/health"
    rt = "simpul.health"
    ct = " ".join(str(cf) for cf in HEALTH_FORMATS)

    async def render_post(self, request: Message) -> Message:
        check_size(len(request.payload), self._limits)
        board_id, report = decode_health(request.payload, _content_format(request))
        await self._writer.submit_health(
            board_id, report, address=_address(request), received_ms=now_ms()
        )
        return Message(code=CHANGED)


class GatewayHealthResource(Resource):  # type: ignore[misc]
    """``GET /gateway``: the gateway's own health as JSON (what ``Gateway.stats()`` says)."""

    rt = "simpul.gateway"
    ct = str(JSON)

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self._stats = stats

    async def render_get(self, request: Message) -> Message:
        body = json.dumps(self._stats(), separators=(",", ":")).encode()
        return Message(code=CONTENT, payload=body, content_format=JSON)


class GatewaySite(Site):  # type: ignore[misc]
    """The root: dispatches by exact path, answers unknown paths with a diagnostic.

    Every resource here lives at a fixed path and ignores its path, so the request goes
    to it as it is; aiocoap's ``Site`` would copy each request to strip the path first,
    which is a large part of its per-request cost.
    """

    def __init__(self, counters: Counters) -> None:
        super().__init__()
        self._counters = counters
        self._by_path: dict[tuple[str, ...], Any] = {}

    def add_resource(self, path: tuple[str, ...], resource: Any) -> None:
        super().add_resource(path, resource)
        self._by_path[tuple(path)] = resource

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        if request.opt.uri_path_abbrev is None:
            child = self._by_path.get(request.opt.uri_path)
            if child is not None:
                await child.render_to_pipe(pipe)
                return
        try:
            await super().render_to_pipe(pipe)
        except coap_error.NotFound:
            self._counters.refused[UnknownPath.reason] += 1
            path = "/" + "/".join(pipe.request.opt.uri_path)
            raise Refusal(UnknownPath(f"no resource at {path}"[:120])) from None


def build_site(
    writer: WriterLink,
    limits: LimitsConfig,
    counters: Counters,
    admission: Admission,
    stats: Callable[[], dict[str, Any]] | None = None,
) -> Site:
    """The gateway's resource tree, ``/.well-known/core`` included (``/gateway`` with stats)."""
    site = GatewaySite(counters)
    site.add_resource(
        (".well-known", "core"), WKCResource(site.get_resources_as_linkheader, impl_info=None)
    )
    site.add_resource(("readings",), ReadingsResource(writer, limits, counters, admission))
    site.add_resource(("health",), HealthResource(writer, limits, counters, admission))
    if stats is not None:
        site.add_resource(("gateway",), GatewayHealthResource(stats))
    return site
