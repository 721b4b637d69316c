"""The fleet engine meets what gateways publish: only what the enrolled gateway's key signed
is recorded, and nothing a gateway sends stops it (fleet/engine.py, no broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.engine import FleetEngine
from fleet.link import Incoming
from fleet.store import DB_NAME, FleetStore
from gateway.batches import format as batch_format
from gateway.codec import cose
from gateway.control import messages

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def engine(tmp_path: Path) -> FleetEngine:
    store = FleetStore(tmp_path / DB_NAME)
    store.add_site("takengon", "Takengon")
    store.add_gateway("gw-1", "takengon", cose.public_bytes(KEY))
    store.enroll_board("b1", kind="air", site_id="takengon", gateway_id="gw-1")
    return FleetEngine(tmp_path, store, None)


def state(seq: int, **board: Any) -> dict[str, Any]:
    report = {
        "last_seen_ms": 1000 * seq,
        "running": 3,
        "health": {"boot_count": seq},
        "health_ms": 1000 * seq,
        "ota": {"state": "confirmed", "detail": None},
        **board,
    }
    return {
        "type": "state", "v": 1, "site": "takengon", "gateway": "gw-1", "at": 1000 * seq,
        "seq": seq, "health": {"backlog": 0}, "boards": {"b1": report}, "rollout": None,
    }  # fmt: skip


def up(payload: dict[str, Any], key: Ed25519PrivateKey = KEY, leaf: str = "state") -> Incoming:
    return Incoming("takengon", "gw-1", leaf, messages.sign_up(key, payload))


def test_a_signed_state_is_recorded_and_an_older_one_is_not(engine: FleetEngine) -> None:
    engine.handle([up(state(2))])
    board = engine.store.board("b1")
    assert board is not None
    assert (board.running, board.ota_state, board.health_ms) == (3, "confirmed", 2000)
    engine.handle([up(state(1, running=1))])
    board = engine.store.board("b1")
    assert board is not None
    assert board.running == 3
    assert not engine.refused


def test_forged_misaddressed_and_hostile_messages_are_counted_and_change_nothing(
    engine: FleetEngine,
) -> None:
    engine.handle([up(state(5))])
    before = engine.store.board("b1")
    hostile = [
        up(state(9, running=9), key=Ed25519PrivateKey.generate()),  # another key
        Incoming("takengon", "gw-2", "state", up(state(9)).payload),  # not enrolled
        Incoming("tegal", "gw-1", "state", up(state(9)).payload),  # another site
        Incoming("takengon", "gw-1", "state", b"\xff" * 40),  # not COSE
        up({**state(9), "gateway": "gw-9"}),  # names another gateway
        up(state(9), leaf="events"),  # a state on the events topic
        up({**state(9), "health": {"x": b"\x00"}, "boards": {}}),  # cannot be stored as JSON
        Incoming("takengon", "gw-1", "batches", b"\xa0"),  # not a batch
    ]
    engine.handle(hostile)
    assert engine.store.board("b1") == before
    assert sum(engine.refused.values()) == len(hostile), engine.refused
    assert set(engine.refused) >= {"untrusted_key", "unknown_gateway", "wrong_site",
                                   "wrong_gateway", "wrong_topic", "unrecordable"}  # fmt: skip


def test_signed_batches_become_baselines_and_a_forged_batch_does_not(
    engine: FleetEngine,
) -> None:
    class Row:
        def __init__(self, i: int, value: float) -> None:
            self.id, self.board_id, self.name, self.unit = i, "b1", "temperature", "Cel"
            self.kind, self.value, self.time_ms = "v", value, 1_700_000_000_000 + i

    chain = batch_format.ChainState()
    encoded, chain = batch_format.build(KEY, chain, [Row(1, 20.0), Row(2, 22.0)], 1,
                                        gateway="gw-1", site="takengon")  # fmt: skip
    forged, _ = batch_format.build(Ed25519PrivateKey.generate(), chain, [Row(3, 99.0)], 2,
                                   gateway="gw-1", site="takengon")  # fmt: skip
    engine.handle([Incoming("takengon", "gw-1", "batches", encoded)])
    engine.handle([Incoming("takengon", "gw-1", "batches", forged)])
    summary = engine.store.summary("b1", "temperature")
    assert summary is not None
    assert (summary.count, summary.mean) == (2, 21.0)
    assert engine.readings_verified == 2
    assert engine.refused
