"""aiocoap's OSCORE site wrapper in front of the gateway's resource tree.

aiocoap's :class:`~aiocoap.oscore_sitewrapper.OscoreSiteWrapper` unprotects each protected
request with the context its kid names (:class:`gateway.oscore.contexts.BoardCredentials`)
and hands the plain request on with an ``OSCOREAddress`` remote, which the resources read the
board from; plain requests go on as they are and the resource tree decides
(``gateway.intake.resources.GatewaySite``). This subclass only turns an OSCORE option that does
not parse into a counted 4.01 (aiocoap would answer 5.00 or 4.02).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiocoap import error as coap_error
from aiocoap import oscore
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

from gateway.oscore.contexts import BoardCredentials


class GatewayOscoreSite(OscoreSiteWrapper):  # type: ignore[misc]
    """The site the server context serves: OSCORE first, then the gateway's resources."""

    def __init__(self, inner: Any, credentials: BoardCredentials, refused: Counter[str]) -> None:
        super().__init__(inner, credentials)
        self._refused = refused
        # Passed through to the server context (gateway.daemon.ServerContext).
        self.gate = inner.gate
        self.max_dedup_entries = inner.max_dedup_entries

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        if request.opt.oscore is not None:
            try:
                oscore.verify_start(request)
            except oscore.NotAProtectedMessage:
                pass
            except Exception:  # any parse failure of a hostile OSCORE option
                self._refused["bad_cose"] += 1
                raise coap_error.Unauthorized("OSCORE option not understood") from None
        await super().render_to_pipe(pipe)
