"""Which boards are told that an update is due, in the 2.04 to their ``/readings`` or
``/health``.

The hint is the payload ``{"ota": seq}`` (CBOR, Content-Format 60) on the 2.04: a board of
today's release reads only the response code of those requests and ignores it. A board gets
it when a desired release is set for it (``simpul gateway desired set``: by board id, else by
its kind) and its last health report does not say it runs that seq (``gateway.ota.report``).

Health reports carry the board's id; a readings request does not say which board it is
until the writer process has decoded it, so a ``/readings`` answer carries the hint when
its source address is the one the board's last health report came from (a board sends both
from one socket). The board's kind is its health report's ``kind`` field, when it says one.

The control channel's ``reboot`` command (``gateway.control``) adds ``"reboot": 1`` to the
same payload for a board with a reboot waiting in ``board_commands``, until the board's
health shows a boot count above the one it had when the command came.

OSCORE key rotation adds ``"key": "<the board file's JSON>"`` to the same payload while a
board still uses its old key (``gateway.intake.resources``, ``gateway.oscore.contexts``); the
payload is then protected under that key, never sent in clear.

Desired releases and waiting reboots change in other processes (the command line, the control
process); they are read again when the database has changed, at most every ``refresh_s``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from gateway.ota.report import running_seq
from gateway.store.control import ControlStore
from gateway.store.releases import ReleaseTable

#: Content-Format of the hint: application/cbor.
CBOR: Final = 60


def encode_hint(fields: dict[str, Any]) -> bytes | None:
    """A hint's payload: its fields as a CBOR map, None for no fields."""
    return bytes(cbor2.dumps(fields)) if fields else None


@dataclass(slots=True)
class _Board:
    running: int
    kind: str | None
    address: str | None
    boot_count: int | None = None


def _boot_count(health: dict[str, Any] | None) -> int | None:
    value = health.get("boot_count") if health is not None else None
    return value if type(value) is int else None


class UpdateHints:
    """The CoAP process's view of desired releases and of what each board runs.

    ``max_boards`` bounds the boards remembered (least recently heard go first).
    """

    def __init__(
        self,
        table: ReleaseTable,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float = 1.0,
        max_boards: int = 100_000,
        control: ControlStore | None = None,
    ) -> None:
        self._table = table
        self._control = control
        self._reboots: dict[str, int] = {}
        self._clock = clock
        self._refresh_s = refresh_s
        self._max_boards = max_boards
        self._boards: OrderedDict[str, _Board] = OrderedDict()
        self._by_address: dict[str, str] = {}
        self._by_board: dict[str, int] = {}
        self._by_kind: dict[str, int] = {}
        self._version: int | None = None
        self._checked = float("-inf")
        self.sent = 0

    def remember(self, boards: Iterable[tuple[str, str | None, dict[str, Any] | None]]) -> None:
        """What the registry knew at start: (board id, address, last health) of each board."""
        for board_id, address, health in boards:
            self.saw_health(board_id, address, health)

    def saw_health(self, board_id: str, address: str | None, health: dict[str, Any] | None) -> None:
        """A board's health report (already checked) came from ``address``."""
        kind = health.get("kind") if health is not None else None
        board = _Board(
            running_seq(health),
            kind if isinstance(kind, str) else None,
            address,
            _boot_count(health),
        )
        old = self._boards.pop(board_id, None)
        if old is not None and old.address is not None:
            self._by_address.pop(old.address, None)
        self._boards[board_id] = board
        if address is not None:
            self._by_address[address] = board_id
        while len(self._boards) > self._max_boards:
            _, dropped = self._boards.popitem(last=False)
            if dropped.address is not None:
                self._by_address.pop(dropped.address, None)

    def for_board(self, board_id: str) -> int | None:
        """The seq to hint to ``board_id``, or None when it runs what it should."""
        self._refresh()
        board = self._boards.get(board_id)
        desired = self._by_board.get(board_id)
        if desired is None and board is not None and board.kind is not None:
            desired = self._by_kind.get(board.kind)
        if desired is None or (board is not None and board.running == desired):
            return None
        return desired

    def for_address(self, address: str | None) -> int | None:
        """The seq to hint to whichever board last reported health from ``address``."""
        if address is None:
            return None
        board_id = self._by_address.get(address)
        return None if board_id is None else self.for_board(board_id)

    def reboot_due(self, board_id: str) -> bool:
        """Whether ``board_id`` has a reboot waiting that its health does not show done."""
        self._refresh()
        asked_at = self._reboots.get(board_id)
        if asked_at is None:
            return False
        board = self._boards.get(board_id)
        return board is None or board.boot_count is None or board.boot_count <= asked_at

    def fields(self, board_id: str | None) -> dict[str, Any]:
        """What is due for ``board_id``: ``{"ota": seq}``, ``{"reboot": 1}``, both or none
        (the 2.04's payload; the OSCORE layer may add a key to it, ``gateway.intake``)."""
        hint: dict[str, Any] = {}
        if board_id is None:
            return hint
        seq = self.for_board(board_id)
        if seq is not None:
            hint["ota"] = seq
        if self.reboot_due(board_id):
            hint["reboot"] = 1
        if hint:
            self.sent += 1
        return hint

    def fields_for_address(self, address: str | None) -> dict[str, Any]:
        """:meth:`fields` for whichever board last reported health from ``address``."""
        return self.fields(None if address is None else self._by_address.get(address))

    def hint(self, board_id: str | None) -> bytes | None:
        """The 2.04 payload for ``board_id``, CBOR (:meth:`fields`), or None when nothing
        is due."""
        return encode_hint(self.fields(board_id))

    def hint_for_address(self, address: str | None) -> bytes | None:
        """:meth:`hint` for whichever board last reported health from ``address``."""
        return encode_hint(self.fields_for_address(address))

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked < self._refresh_s:
            return
        self._checked = now
        version = self._table.data_version()
        if version == self._version:
            return
        self._version = version
        self._by_board, self._by_kind = {}, {}
        for scope, target, seq in self._table.desired():
            (self._by_board if scope == "board" else self._by_kind)[target] = seq
        if self._control is not None:
            self._reboots = self._control.pending_reboots()
