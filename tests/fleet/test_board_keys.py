"""Boards' OSCORE keys in fleet.db, and the fleet sealing them into each gateway's desired
document: only the board's own gateway can open its key, a document that has not changed
keeps its bytes, and a rekey reaches the gateway as a new seal (fleet/store.py,
fleet/engine.py; the gateway's side is tests/control/test_sealed_keys.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fleet import store as fleet_store
from fleet.engine import FleetEngine
from fleet.errors import Conflict
from fleet.link import Incoming
from fleet.store import DB_NAME, SCHEMA_VERSION, FleetStore
from gateway.codec import cose
from gateway.control import messages
from gateway.errors import SealRefused
from gateway.oscore import seal
from gateway.oscore.keys import KeyMaterial, generate

KEY = Ed25519PrivateKey.generate()
SEAL = X25519PrivateKey.generate()


@pytest.fixture
def engine(tmp_path: Path) -> FleetEngine:
    store = FleetStore(tmp_path / DB_NAME)
    store.add_site("takengon", "Takengon")
    store.add_gateway("gw-1", "takengon", cose.public_bytes(KEY))
    for board in ("b1", "b2"):
        store.enroll_board(board, kind="air", site_id="takengon", gateway_id="gw-1")
    return FleetEngine(tmp_path, store, None)


def state(seq: int, seal_key: bytes | None) -> Incoming:
    payload: dict[str, Any] = {
        "type": "state", "v": 1, "site": "takengon", "gateway": "gw-1", "at": 1000 * seq,
        "seq": seq, "health": {}, "boards": {}, "rollout": None,
    }  # fmt: skip
    if seal_key is not None:
        payload["seal_key"] = seal_key
    return Incoming("takengon", "gw-1", "state", messages.sign_up(KEY, payload))


def opened(sealed: bytes | None, board_id: str, private: X25519PrivateKey = SEAL) -> KeyMaterial:
    assert sealed is not None
    plain = seal.open_sealed(sealed, private, site="takengon", gateway="gw-1", board_id=board_id)
    return KeyMaterial.from_json(json.loads(plain))


def test_a_board_key_is_kept_and_a_rekey_keeps_its_sender_id(engine: FleetEngine) -> None:
    store = engine.store
    first = generate("b1", b"\x01\x02").material
    assert store.set_board_key("b1", first) == 1
    assert store.board_key("b1") == (first, 1)
    second = generate("b1", b"\x01\x02").material
    assert store.set_board_key("b1", second) == 2
    assert store.board_key("b1") == (second, 2)
    assert store.sid_owner(b"\x01\x02") == "b1"
    assert store.board_key("b2") is None


def test_a_sender_id_is_one_boards_and_never_changes(engine: FleetEngine) -> None:
    store = engine.store
    mine = generate("b1", b"\x01").material
    store.set_board_key("b1", mine)
    with pytest.raises(Conflict, match="is board 'b1'"):
        store.set_board_key("b2", generate("b2", b"\x01").material)
    with pytest.raises(Conflict, match="keeps its Sender ID"):
        store.set_board_key("b1", generate("b1", b"\x09").material)
    assert store.board_key("b1") == (mine, 1)
    assert store.board_key("b2") is None


def test_the_desired_document_carries_each_key_sealed_to_the_gateway_alone(
    engine: FleetEngine,
) -> None:
    key = generate("b1", b"\x0a").material
    engine.store.set_board_key("b1", key)
    # Before the gateway has named its seal key there is nothing to seal to.
    assert engine.desired_for("gw-1").boards["b1"].oscore is None
    engine.handle([state(1, seal.public_bytes(SEAL))])
    gateway = engine.store.gateway("gw-1")
    assert gateway is not None
    assert gateway.seal_key == seal.public_bytes(SEAL)
    boards = engine.desired_for("gw-1").boards
    assert opened(boards["b1"].oscore, "b1") == key
    assert boards["b2"].oscore is None  # no key in fleet.db: none sent
    # Another gateway's key, or the seal moved to another board's entry, opens nothing.
    with pytest.raises(SealRefused):
        opened(boards["b1"].oscore, "b1", X25519PrivateKey.generate())
    with pytest.raises(SealRefused):
        opened(boards["b1"].oscore, "b2")
    # The key never crosses the broker in clear: the document's bytes do not hold it.
    assert key.secret not in cbor2.dumps(engine.desired_for("gw-1").payload())


def test_an_unchanged_key_keeps_its_seal_and_a_rekey_or_a_new_seal_key_makes_another(
    engine: FleetEngine,
) -> None:
    engine.store.set_board_key("b1", generate("b1", b"\x0a").material)
    engine.handle([state(1, seal.public_bytes(SEAL))])
    first = engine.desired_for("gw-1").boards["b1"].oscore
    assert engine.desired_for("gw-1").boards["b1"].oscore == first  # no republishing
    engine.handle([state(2, None)])  # a state without one keeps the seal key known
    assert engine.desired_for("gw-1").boards["b1"].oscore == first
    rekeyed = generate("b1", b"\x0a").material
    engine.store.set_board_key("b1", rekeyed)
    second = engine.desired_for("gw-1").boards["b1"].oscore
    assert second != first
    assert opened(second, "b1") == rekeyed
    other = X25519PrivateKey.generate()
    engine.handle([state(3, seal.public_bytes(other))])
    assert opened(engine.desired_for("gw-1").boards["b1"].oscore, "b1", other) == rekeyed


def test_a_forged_state_cannot_plant_a_seal_key(engine: FleetEngine) -> None:
    engine.store.set_board_key("b1", generate("b1", b"\x0a").material)
    attacker = X25519PrivateKey.generate()
    payload = {
        "type": "state", "v": 1, "site": "takengon", "gateway": "gw-1", "at": 1000, "seq": 1,
        "health": {}, "boards": {}, "rollout": None, "seal_key": seal.public_bytes(attacker),
    }  # fmt: skip
    forged = messages.sign_up(Ed25519PrivateKey.generate(), payload)
    engine.handle([Incoming("takengon", "gw-1", "state", forged)])
    gateway = engine.store.gateway("gw-1")
    assert gateway is not None
    assert gateway.seal_key is None
    assert engine.desired_for("gw-1").boards["b1"].oscore is None


def test_a_version_2_file_migrates_with_its_boards_and_takes_keys(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    with sqlite3.connect(path) as db:
        for script in (fleet_store._SCHEMA_V1, fleet_store._SCHEMA_V2_ADDED):
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("INSERT INTO sites (site_id, name, created_ms) VALUES ('s', 'S', 1)")
        db.execute(
            "INSERT INTO gateways (gateway_id, site_id, public_key, added_ms)"
            " VALUES ('g', 's', ?, 1)",
            (bytes(32),),
        )
        db.execute(
            "INSERT INTO boards (board_id, kind, site_id, gateway_id, enrolled_ms)"
            " VALUES ('b', 'air', 's', 'g', 1)"
        )
        db.execute("PRAGMA user_version = 2")
    db.close()
    with FleetStore(path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 3
        gateway = store.gateway("g")
        assert gateway is not None
        assert gateway.seal_key is None
        assert store.board_key("b") is None
        key = generate("b", b"\x05").material
        assert store.set_board_key("b", key) == 1
        assert store.board_key("b") == (key, 1)


def test_rekey_from_the_command_line_is_audited_with_the_fingerprint_only(
    tmp_path: Path, engine: FleetEngine
) -> None:
    from fleet.cli import main

    first = generate("b1", b"\x0a").material
    engine.store.set_board_key("b1", first)
    assert main(["fleet", "boards", "rekey", "b1", "--fleet-dir", str(tmp_path)]) == 0
    found = engine.store.board_key("b1")
    assert found is not None
    material, generation = found
    assert generation == 2
    assert material.sid == first.sid
    assert material.secret != first.secret
    entry = engine.store.audit_entries()[-1]
    assert (entry.action, entry.target, entry.result) == ("board.rekey", "b1", "ok")
    assert entry.detail == {"oscore_key": material.fingerprint}
    assert material.secret.hex() not in json.dumps(entry.detail)
    # A board with no key is refused, audited, and changes nothing.
    assert main(["fleet", "boards", "rekey", "b2", "--fleet-dir", str(tmp_path)]) != 0
    assert engine.store.board_key("b2") is None
    assert engine.store.audit_entries()[-1].result.startswith("error: board b2 has no OSCORE")
