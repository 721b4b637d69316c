"""Address checks with Echo (RFC 9175 §2.4) before large answers to unauthenticated peers.

A request's source address is anyone's to forge, so a gateway that answered a 25-byte GET
with a 1024-byte block would send forty times the traffic to whoever the forger names. So a
peer's first request for large content gets 4.01 Unauthorized carrying an Echo option (a
short value only that address can have received); a request repeating it proves the
address answers, and that host then gets full blocks for ``verified_for_s``. The challenge
is smaller than the request, so nothing is amplified on the way.

Echo values are an HMAC of the host and the current time slot under a secret made at start,
so the gateway keeps no state per challenge; at most ``max_hosts`` verified hosts are kept.
Pure of sockets and CoAP messages.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

#: Bytes of an Echo value (RFC 9175 allows 1..40).
ECHO_BYTES: Final = 8


class AddressCheck:
    """Which hosts have shown they receive what is sent to them, and the Echo that shows it."""

    def __init__(
        self,
        *,
        slot_s: float = 30.0,
        verified_for_s: float = 300.0,
        max_hosts: int = 10_000,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slot_s = slot_s
        self.verified_for_s = verified_for_s
        self.max_hosts = max_hosts
        self._secret = secret or os.urandom(32)
        self._clock = clock
        self._verified: OrderedDict[str, float] = OrderedDict()

    def challenge(self, host: str) -> bytes:
        """The Echo value to send ``host`` now."""
        return self._value(host, int(self._clock() // self.slot_s))

    def verified(self, host: str, echo: bytes | None) -> bool:
        """Whether ``host`` may have a large answer: checked lately, or ``echo`` shows it now.

        An Echo is good for the slot it was made in and the one after (30 to 60 s).
        """
        now = self._clock()
        until = self._verified.get(host)
        if until is not None and until > now:
            return True
        if echo is None or len(echo) != ECHO_BYTES:
            return False
        slot = int(now // self.slot_s)
        if not any(hmac.compare_digest(echo, self._value(host, s)) for s in (slot, slot - 1)):
            return False
        self._verified[host] = now + self.verified_for_s
        self._verified.move_to_end(host)
        while len(self._verified) > self.max_hosts:
            self._verified.popitem(last=False)
        return True

    def _value(self, host: str, slot: int) -> bytes:
        message = f"{host}|{slot}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:ECHO_BYTES]
