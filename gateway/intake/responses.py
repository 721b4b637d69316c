"""Gateway errors as CoAP responses: the one place a :class:`GatewayError` meets aiocoap.

A refusal is answered with the error's code and a short diagnostic payload (RFC 7252
§5.5.2); :class:`~gateway.errors.PayloadTooLarge` adds Size1 (§5.10.9) and
:class:`~gateway.errors.OutboxFull` Max-Age (§5.10.5). Raised inside aiocoap's own request
handling (where a resource cannot return a message), :class:`Refusal` carries the same
response out through aiocoap's ``RenderableError``.
"""

from __future__ import annotations

from typing import Final

from aiocoap import Message
from aiocoap.error import RenderableError
from aiocoap.numbers.codes import Code

from gateway.errors import GatewayError, OutboxFull, PayloadTooLarge, PeerBusy

#: Diagnostic payloads are for people debugging boards: short on the wire.
MAX_DIAGNOSTIC_BYTES: Final = 120


#: Bytes of a response besides its token and diagnostic: header and payload marker...
_OVERHEAD_BYTES: Final = 4 + 1
#: ... and Size1 or Max-Age where the error carries one.
_OPTION_BYTES: Final = 6


def error_response(error: GatewayError, *, budget: int | None = None) -> Message:
    """The CoAP response for ``error``: its code, options, and the diagnostic as UTF-8.

    ``budget`` bounds the response in bytes, its token aside (an unauthenticated peer gets
    no more than a few times what it sent): the diagnostic is cut to fit, never the code.
    """
    overhead = _OVERHEAD_BYTES + (_OPTION_BYTES if error.hint is not None else 0)
    room = MAX_DIAGNOSTIC_BYTES if budget is None else budget - overhead
    response = Message(
        code=Code(error.code), payload=_clip_utf8(error.message, min(room, MAX_DIAGNOSTIC_BYTES))
    )
    if isinstance(error, PayloadTooLarge):
        response.opt.size1 = error.limit
    elif isinstance(error, OutboxFull | PeerBusy):
        response.opt.max_age = error.retry_after_s
    return response


def _clip_utf8(text: str, limit: int) -> bytes:
    """``text`` as UTF-8 of at most ``limit`` bytes, never cut inside a character."""
    return text.encode("utf-8")[: max(limit, 0)].decode("utf-8", "ignore").encode("utf-8")


class Refusal(RenderableError):  # type: ignore[misc]
    """A :class:`GatewayError` raised through aiocoap, which renders it as its response."""

    def __init__(self, error: GatewayError, budget: int | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.budget = budget

    def to_message(self) -> Message:
        return error_response(self.error, budget=self.budget)
