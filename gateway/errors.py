"""Every error the gateway raises, in one place.

Each exception also inherits the builtin a caller would naturally catch (``ValueError`` for
bad input, ``OSError`` for the file system), and each one that can cross the network knows
its CoAP response code and renders itself as a response with a short diagnostic payload
(RFC 7252 §5.5.2), so aiocoap answers with it when a resource raises it.
"""

from __future__ import annotations

from typing import ClassVar

from aiocoap import Message
from aiocoap.error import RenderableError
from aiocoap.numbers.codes import Code


class GatewayError(RenderableError):  # type: ignore[misc]
    """Base of all gateway errors; renders as 5.00 unless a subclass says otherwise."""

    code: ClassVar[Code] = Code.INTERNAL_SERVER_ERROR
    #: Short name used for the "refused by reason" counters.
    reason: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_message(self) -> Message:
        """The CoAP response for this error: its code and the diagnostic as UTF-8 text."""
        # Diagnostic payloads are for humans debugging boards; keep them short on the wire.
        return Message(code=self.code, payload=self.message.encode("utf-8")[:200])


class BadPayload(GatewayError, ValueError):
    """The payload is not what the content-format promises (bad CBOR/JSON, not SenML...)."""

    code = Code.BAD_REQUEST
    reason = "bad_payload"


class BadQuery(GatewayError, ValueError):
    """A URI query option is malformed (e.g. ``s=`` is not a non-negative integer)."""

    code = Code.BAD_REQUEST
    reason = "bad_query"


class UnsupportedContentFormat(GatewayError, ValueError):
    """The request's Content-Format is not one this resource accepts."""

    code = Code.UNSUPPORTED_CONTENT_FORMAT
    reason = "unsupported_content_format"


class PayloadTooLarge(GatewayError, ValueError):
    """The request body exceeds the configured limit; the response's Size1 names the limit."""

    code = Code.REQUEST_ENTITY_TOO_LARGE
    reason = "too_large"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit

    def to_message(self) -> Message:
        response = super().to_message()
        response.opt.size1 = self.limit
        return response


class UnknownPath(GatewayError, LookupError):
    """No resource lives at the requested path."""

    code = Code.NOT_FOUND
    reason = "not_found"


class MethodNotAllowed(GatewayError, ValueError):
    """The resource exists but does not accept this method."""

    code = Code.METHOD_NOT_ALLOWED
    reason = "method_not_allowed"


class StoreUnavailable(GatewayError, RuntimeError):
    """The store could not commit (disk error, shutting down); the board should retry later."""

    code = Code.SERVICE_UNAVAILABLE
    reason = "store_unavailable"


class StoreCorrupt(GatewayError, OSError):
    """The database file exists but SQLite cannot use it; it is left untouched."""

    reason = "store_corrupt"


class ConfigError(GatewayError, ValueError):
    """The configuration file or an environment override is invalid."""

    reason = "config"


class StateDirError(GatewayError, OSError):
    """The state directory cannot be created or written."""

    reason = "state_dir"


class BindError(GatewayError, OSError):
    """The CoAP server could not bind its address (port in use, no such address...)."""

    reason = "bind"


class BadBatch(GatewayError, ValueError):
    """Bytes that are not a well-formed simpul batch (COSE_Sign1 over the batch payload)."""

    reason = "bad_batch"


class BadSignature(GatewayError, ValueError):
    """A batch's signature does not verify with the key it names."""

    reason = "bad_signature"


class UnknownKey(GatewayError, LookupError):
    """A batch names a signing key (kid) that the verifier does not trust."""

    reason = "unknown_key"


class KeyFileError(GatewayError, OSError):
    """The gateway's key file is missing, unreadable, not a key, or readable by others."""

    reason = "key_file"


class RetiredKey(UnknownKey):
    """A batch is signed by a key its gateway rotated out before that batch's seq."""

    reason = "retired_key"


class UplinkError(GatewayError, OSError):
    """An uplink could not deliver (broker or server down, refused, timed out); it retries."""

    reason = "uplink"


class OutboxFull(GatewayError, RuntimeError):
    """The outbox is at its disk budget (policy ``refuse``): 5.03 with Max-Age.

    The board keeps the readings in its own buffer and sends them again after Max-Age
    seconds, by when the uplinks may have made room.
    """

    code = Code.SERVICE_UNAVAILABLE
    reason = "outbox_full"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def to_message(self) -> Message:
        response = super().to_message()
        response.opt.max_age = self.retry_after_s
        return response
