"""Every error the gateway raises, in one place.

Each exception also inherits the builtin a caller would naturally catch (``ValueError`` for
bad input, ``OSError`` for the file system). Each one that can cross the network names its
CoAP response code as a plain number (RFC 7252 §12.1.2: class times 32 plus detail) and, where the
response carries an option, the option's value (:attr:`GatewayError.hint`);
:mod:`gateway.intake.responses` renders them as responses with a short diagnostic payload.
This module imports no CoAP stack, so ``simpul verify`` and the batch format need none.
"""

from __future__ import annotations

from typing import ClassVar, Final


def coap_code(klass: int, detail: int) -> int:
    """A CoAP response code as its number: ``coap_code(4, 4)`` is 4.04 (132)."""
    return klass << 5 | detail


BAD_REQUEST: Final = coap_code(4, 0)
UNAUTHORIZED: Final = coap_code(4, 1)
BAD_OPTION: Final = coap_code(4, 2)
FORBIDDEN: Final = coap_code(4, 3)
NOT_FOUND: Final = coap_code(4, 4)
METHOD_NOT_ALLOWED: Final = coap_code(4, 5)
REQUEST_ENTITY_INCOMPLETE: Final = coap_code(4, 8)
PRECONDITION_FAILED: Final = coap_code(4, 12)
REQUEST_ENTITY_TOO_LARGE: Final = coap_code(4, 13)
UNSUPPORTED_CONTENT_FORMAT: Final = coap_code(4, 15)
INTERNAL_SERVER_ERROR: Final = coap_code(5, 0)
SERVICE_UNAVAILABLE: Final = coap_code(5, 3)
PROXYING_NOT_SUPPORTED: Final = coap_code(5, 5)


class GatewayError(Exception):
    """Base of all gateway errors; answered with 5.00 unless a subclass says otherwise."""

    code: ClassVar[int] = INTERNAL_SERVER_ERROR
    #: Short name used for the "refused by reason" counters.
    reason: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def hint(self) -> int | None:
        """The value of the option the response carries (Size1, Max-Age), if any."""
        return None

    @classmethod
    def rebuild(cls, message: str, hint: int | None) -> GatewayError:
        """The same error from its message and :attr:`hint` (as another process sent them)."""
        return cls(message)


class BadPayload(GatewayError, ValueError):
    """The payload is not what the content-format promises (bad CBOR/JSON, not SenML...)."""

    code = BAD_REQUEST
    reason = "bad_payload"


class BadQuery(GatewayError, ValueError):
    """A URI query option is malformed (e.g. ``s=`` is not a non-negative integer)."""

    code = BAD_REQUEST
    reason = "bad_query"


class UnsupportedContentFormat(GatewayError, ValueError):
    """The request's Content-Format is not one this resource accepts."""

    code = UNSUPPORTED_CONTENT_FORMAT
    reason = "unsupported_content_format"


class PayloadTooLarge(GatewayError, ValueError):
    """The request body exceeds the configured limit; the response's Size1 names the limit."""

    code = REQUEST_ENTITY_TOO_LARGE
    reason = "too_large"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit

    @property
    def hint(self) -> int:
        return self.limit

    @classmethod
    def rebuild(cls, message: str, hint: int | None) -> PayloadTooLarge:
        return cls(message, limit=hint or 0)


class UnknownPath(GatewayError, LookupError):
    """No resource lives at the requested path."""

    code = NOT_FOUND
    reason = "not_found"


class MethodNotAllowed(GatewayError, ValueError):
    """The resource exists but does not accept this method."""

    code = METHOD_NOT_ALLOWED
    reason = "method_not_allowed"


class StoreUnavailable(GatewayError, RuntimeError):
    """The store could not commit (disk error, shutting down); the board should retry later."""

    code = SERVICE_UNAVAILABLE
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


class CoseError(GatewayError, ValueError):
    """Bytes that are not a well-formed COSE_Sign1 with the headers simpul signs with."""

    reason = "bad_cose"


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

    code = SERVICE_UNAVAILABLE
    reason = "outbox_full"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def hint(self) -> int:
        return self.retry_after_s

    @classmethod
    def rebuild(cls, message: str, hint: int | None) -> OutboxFull:
        return cls(message, retry_after_s=hint if hint is not None else 60)


class IncompleteTransfer(GatewayError, ValueError):
    """A Block1 block that continues no transfer, or not where it stands (RFC 7959 §2.9.2)."""

    code = REQUEST_ENTITY_INCOMPLETE
    reason = "incomplete_transfer"


class Unauthorized(GatewayError, PermissionError):
    """The request needs a peer the gateway trusts (the management API)."""

    code = UNAUTHORIZED
    reason = "unauthorized"


class PeerBusy(GatewayError, RuntimeError):
    """One peer has too many requests waiting for the store: 5.03 with Max-Age."""

    code = SERVICE_UNAVAILABLE
    reason = "peer_busy"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def hint(self) -> int:
        return self.retry_after_s

    @classmethod
    def rebuild(cls, message: str, hint: int | None) -> PeerBusy:
        return cls(message, retry_after_s=hint if hint is not None else 1)


class DecodeFault(BadPayload):
    """Decoding a request failed in a way no decoder foresaw: a gateway bug its bytes found.

    Answered 4.00 like any bad payload (the same bytes would fail again, so the board must
    not retry them forever) and counted apart, so that the bug is seen and fixed.
    """

    reason = "decode_fault"


class BadFrame(GatewayError, ValueError):
    """A frame between the gateway's own processes is malformed: a bug, never a peer's doing."""

    reason = "bad_frame"


class ReleaseRejected(GatewayError, ValueError):
    """A release the OTA cache refuses: it fails the checks a board makes, or clashes with a
    cached one. :attr:`why` is the refusal's short reason (``fleet.errors`` reasons)."""

    reason = "release_rejected"

    def __init__(self, message: str, why: str = "refused") -> None:
        super().__init__(message)
        self.why = why


class UnknownRelease(GatewayError, LookupError):
    """No cached release, or no file of it, at the requested path."""

    code = NOT_FOUND
    reason = "unknown_release"


class DamagedRelease(GatewayError, OSError):
    """A cached release's file is missing or is not the one its manifest names (5.00)."""

    reason = "release_damaged"


class ControlRefused(GatewayError, ValueError):
    """A control-channel message (desired-state document or command) the gateway refuses.

    :attr:`why` is the refusal's reason, one of ``gateway.control.messages.REFUSAL_REASONS``;
    refusals are counted by it."""

    reason = "control_refused"

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why

    @classmethod
    def rebuild(cls, message: str, hint: int | None) -> GatewayError:
        return cls("malformed", message)  # the reason does not travel between processes


class BoardMismatch(GatewayError, PermissionError):
    """A request protected with one board's OSCORE keys names another board in its payload."""

    code = FORBIDDEN
    reason = "board_mismatch"


class BadBoardKeys(GatewayError, ValueError):
    """Board key material (a keys file, a desired document's entry) that cannot be used."""

    reason = "bad_board_keys"


class SealRefused(GatewayError, ValueError):
    """A sealed board key that does not open: tampered, or sealed for another gateway."""

    reason = "seal_refused"


class NotProtected(Unauthorized):
    """A plain CoAP request while the gateway accepts only OSCORE (no lab flag): 4.01."""

    reason = "not_protected"


class PiUnavailable(GatewayError, ConnectionError):
    """The daemon's GPIO (``gateway.pi``) could not be reached from the control process: the
    daemon is not running, or answered nothing sensible on its local socket."""

    reason = "pi_unavailable"
