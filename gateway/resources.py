"""The gateway's CoAP endpoints: one aiocoap ``Resource`` per path, the tree in :func:`build_site`.

The resources only translate between CoAP messages and the plain functions in
:mod:`gateway.intake`; errors are :mod:`gateway.errors` exceptions, which render themselves
as responses (code plus diagnostic payload) and are counted by reason on the way out.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiocoap import CHANGED, Message
from aiocoap import error as coap_error
from aiocoap.resource import Resource, Site, WKCResource

from gateway.config import LimitsConfig
from gateway.errors import GatewayError, MethodNotAllowed, UnknownPath
from gateway.intake import (
    HEALTH_FORMATS,
    READINGS_FORMATS,
    accept_health,
    accept_readings,
    check_size,
)
from gateway.store import Counters, Store


def _content_format(request: Message) -> int | None:
    cf = request.opt.content_format
    return None if cf is None else int(cf)


def _address(request: Message) -> str | None:
    try:
        return str(request.remote.hostinfo)
    except Exception:  # some transports cannot name their peer; the address is informative
        return None


class _IntakeResource(Resource):  # type: ignore[misc]
    """Common ground of the POST-only intake endpoints: size guard, refusal counting."""

    path: ClassVar[str]
    allowed: ClassVar[str] = "POST"

    def __init__(self, store: Store, limits: LimitsConfig, counters: Counters) -> None:
        super().__init__()
        self._store = store
        self._limits = limits
        self._counters = counters

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
            raise
        return True

    async def render(self, request: Message) -> Message:
        try:
            response: Message = await super().render(request)
        except coap_error.MethodNotAllowed:
            self._counters.refused[MethodNotAllowed.reason] += 1
            raise MethodNotAllowed(
                f"{request.code} not allowed on {self.path}; use {self.allowed}"
            ) from None
        except GatewayError as exc:
            self._counters.refused[exc.reason] += 1
            raise
        return response


class ReadingsResource(_IntakeResource):
    """``POST /readings``: a SenML pack from a board; 2.04 once it is committed."""

    path = "/readings"
    rt = "simpul.readings"
    ct = " ".join(str(cf) for cf in READINGS_FORMATS)

    async def render_post(self, request: Message) -> Message:
        await accept_readings(
            self._store,
            request.payload,
            _content_format(request),
            request.opt.uri_query,
            address=_address(request),
            limits=self._limits,
        )
        return Message(code=CHANGED)


class HealthResource(_IntakeResource):
    """``POST /health``: a board's health report (CBOR or JSON map); 2.04 once committed."""

    path = "/health"
    rt = "simpul.health"
    ct = " ".join(str(cf) for cf in HEALTH_FORMATS)

    async def render_post(self, request: Message) -> Message:
        await accept_health(
            self._store,
            request.payload,
            _content_format(request),
            address=_address(request),
            limits=self._limits,
        )
        return Message(code=CHANGED)


class GatewaySite(Site):  # type: ignore[misc]
    """The root: answers unknown paths with a diagnostic, and counts them."""

    def __init__(self, counters: Counters) -> None:
        super().__init__()
        self._counters = counters

    async def render_to_pipe(self, pipe: Any) -> None:
        try:
            await super().render_to_pipe(pipe)
        except coap_error.NotFound:
            self._counters.refused[UnknownPath.reason] += 1
            path = "/" + "/".join(pipe.request.opt.uri_path)
            raise UnknownPath(f"no resource at {path}"[:120]) from None


def build_site(store: Store, limits: LimitsConfig, counters: Counters) -> Site:
    """The gateway's resource tree, ``/.well-known/core`` included."""
    site = GatewaySite(counters)
    site.add_resource(
        (".well-known", "core"), WKCResource(site.get_resources_as_linkheader, impl_info=None)
    )
    site.add_resource(("readings",), ReadingsResource(store, limits, counters))
    site.add_resource(("health",), HealthResource(store, limits, counters))
    return site
