"""Block1 (RFC 7959 §2.5): a request body in several datagrams, assembled within bounds.

The gateway assembles atomic Block1 transfers itself rather than leave it to the CoAP stack,
so that the state a stranger can make it hold is bounded and every wrong block gets the
answer the RFC names:

* at most ``max_transfers`` bodies are being assembled at once; a new transfer evicts the
  oldest (whose sender's next block then gets 4.08 and it starts again), so no flood of
  first blocks grows memory or locks out the boards;
* a transfer announcing (Size1) or reaching more than ``max_bytes`` gets 4.13 at once;
* a block that does not continue its transfer (no transfer, a gap, an overlap that differs
  from what came) gets 4.08 Request Entity Incomplete (§2.9.2); a block of the wrong size
  gets 4.00; transfers not continued within ``lifetime_s`` are forgotten.

Pure of CoAP messages and sockets: the resource passes the Block1 fields and the payload.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gateway.errors import BadPayload, IncompleteTransfer, PayloadTooLarge

#: RFC 7959's MAX_TRANSMIT_WAIT-like bound on how long a transfer may pause between blocks.
DEFAULT_LIFETIME_S: Final = 93.0
#: Block size exponent 7 (BERT) exists only over reliable transports (RFC 8323).
_MAX_SZX_UDP: Final = 6


@dataclass(slots=True)
class _Transfer:
    body: bytearray = field(default_factory=bytearray)
    touched: float = 0.0


class Block1Spool:
    """Bodies being assembled, by (peer, path)."""

    def __init__(
        self,
        *,
        max_bytes: int,
        max_transfers: int,
        lifetime_s: float = DEFAULT_LIFETIME_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_transfers = max_transfers
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._transfers: OrderedDict[tuple[str, str], _Transfer] = OrderedDict()
        #: Transfers dropped to make room, and forgotten for lack of a next block.
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._transfers)

    def feed(
        self,
        peer: str,
        path: str,
        *,
        number: int,
        more: bool,
        szx: int,
        payload: bytes,
        size1: int | None = None,
    ) -> bytes | None:
        """Take one block; the whole body once the last block is in, else None.

        Raises :class:`PayloadTooLarge` (4.13), :class:`IncompleteTransfer` (4.08) or
        :class:`BadPayload` (4.00); a refused transfer is forgotten.
        """
        now = self._clock()
        self._expire(now)
        key = (peer, path)
        if szx > _MAX_SZX_UDP:
            self._transfers.pop(key, None)
            raise BadPayload("Block1 size exponent 7 (BERT) is for reliable transports only")
        size = 1 << (szx + 4)
        if more and len(payload) != size:
            self._transfers.pop(key, None)
            raise BadPayload(f"Block1 block {number} has {len(payload)} bytes, not {size}")
        start = number * size
        announced = max(size1 or 0, start + len(payload))
        if announced > self.max_bytes:
            self._transfers.pop(key, None)
            raise PayloadTooLarge(
                f"request body of {announced} bytes exceeds {self.max_bytes}",
                limit=self.max_bytes,
            )
        if number == 0:
            transfer = _Transfer(bytearray(payload), now)
            self._transfers.pop(key, None)
            self._transfers[key] = transfer
            while len(self._transfers) > self.max_transfers:
                self._transfers.popitem(last=False)
                self.evicted += 1
        else:
            transfer = self._continue(key, start, payload, now)
        if more:
            return None
        del self._transfers[key]
        return bytes(transfer.body)

    def _continue(self, key: tuple[str, str], start: int, payload: bytes, now: float) -> _Transfer:
        transfer = self._transfers.get(key)
        if transfer is None:
            raise IncompleteTransfer("no Block1 transfer to continue: start again at block 0")
        body = transfer.body
        if start == len(body):
            body += payload
        elif start + len(payload) <= len(body) and body[start : start + len(payload)] == payload:
            pass  # a block repeated with a new message ID: already in
        else:
            del self._transfers[key]
            raise IncompleteTransfer(
                f"Block1 block at byte {start} does not continue the {len(body)} bytes received"
            )
        transfer.touched = now
        self._transfers.move_to_end(key)
        return transfer

    def _expire(self, now: float) -> None:
        while self._transfers:
            oldest = next(iter(self._transfers.values()))
            if now - oldest.touched < self.lifetime_s:
                return
            self._transfers.popitem(last=False)
            self.expired += 1
