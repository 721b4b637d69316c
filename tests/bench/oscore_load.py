"""OSCORE-protected readings for the load generator (``tests/bench/load.py``), protected
before the timed run so that the load stays as cheap as the plain one.

Each of ``keys``' boards protects its own packs (its board id in the SenML base name, as the
gateway wants the OSCORE identity and the pack to agree; times no other request uses) with
its own sender sequence numbers, in order, so no request is a replay. The boards take turns,
so a window of in-flight requests is spread over all of them. :meth:`ProtectedReadings.prepare`
protects a given number ahead; during the run :meth:`~ProtectedReadings.datagram` only sets
the message ID and token (neither is protected in OSCORE), and each answer is verified with
its request's nonce: the inner code counts (2.04 done, 4.xx/5.xx errors), an unprotected
answer's outer code counts as it is (the gateway's 4.01 refusals are errors), and an answer
that does not verify is unexpected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from gateway.oscore.keys import BoardKey, generate
from tests.bench.load import bench_pack
from tests.oscore_requests import (
    POST,
    UNVERIFIABLE,
    BoardSender,
    ProtectedRequest,
    readings_options,
)

#: The boards of the OSCORE load, taking turns: each has window / OSCORE_BOARDS in flight.
OSCORE_BOARDS = 8


def oscore_bench_keys(boards: int = OSCORE_BOARDS) -> list[BoardKey]:
    """Key material for the OSCORE load's boards ``bench-0000``, ... (Sender IDs 0b00, ...)."""
    return [
        generate(f"bench-{i:04d}", bytes([0x0B, i]), secret=bytes([i + 1]) * 32)
        for i in range(boards)
    ]


class PoolExhausted(RuntimeError):
    """The run sent every request protected beforehand: prepare more."""


class ProtectedReadings:
    """A :class:`tests.bench.load.RequestSource` of pre-protected readings requests."""

    def __init__(self, keys: Sequence[BoardKey], *, readings: int, start_time: int) -> None:
        self.readings = readings
        self.boards = [(key.board_id, BoardSender(key.material)) for key in keys]
        self._next_time = start_time
        self._turn = 0
        self._pool: deque[tuple[BoardSender, ProtectedRequest]] = deque()
        self._by_token: dict[bytes, tuple[BoardSender, ProtectedRequest]] = {}

    @property
    def pool(self) -> int:
        """How many protected requests are ready to send."""
        return len(self._pool)

    def prepare(self, count: int) -> None:
        """Protect ``count`` more requests, the boards in turn."""
        options = readings_options()
        for _ in range(count):
            board_id, sender = self.boards[self._turn % len(self.boards)]
            self._turn += 1
            payload = bench_pack(board_id, self._next_time, self.readings)
            self._next_time += 1
            self._pool.append((sender, sender.protect(POST, options, payload)))

    def datagram(self, mid: int, token: bytes) -> bytes:
        if not self._pool:
            raise PoolExhausted("every pre-protected request was sent; prepare more")
        sender, request = self._pool.popleft()
        self._by_token[token] = (sender, request)
        return request.with_ids(mid, token)

    def answer_code(self, token: bytes, answer: bytes) -> int:
        entry = self._by_token.pop(token, None)
        if entry is None:  # its token was reused after the message ID wrapped
            return UNVERIFIABLE
        sender, request = entry
        return sender.answer_code(request, answer)
