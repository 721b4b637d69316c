"""The gateway's control process against a real Mosquitto and a real ``simpul gateway run``:
what verifies is applied and reaches the boards' desired releases; every forged, replayed or
misaddressed message is refused, applies nothing and is counted by reason in the retained,
gateway-signed state; the stored document holds through a restart with no broker."""

from __future__ import annotations

import dataclasses
import sqlite3
import time

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.control import messages, topics
from tests.control.conftest import GATEWAY, SITE, Fleet, Setup, topic, wait_for
from tests.control.keys import Operator


def refused(rig: Setup) -> dict[str, int]:
    state = rig.last_state()
    return {} if state is None else dict(state["health"]["control"]["refused"])


def test_a_signed_document_is_applied_and_its_releases_become_desired(rig: Setup) -> None:
    fleet = rig.start()
    fleet.publish(topics.release_topic(7), rig.release_file(7), retain=True)
    doc = rig.document(1, {"b1": 7, "b2": 0, "b3": 9}, releases=(7,))
    fleet.publish(topic(topics.DESIRED), rig.operator.seal(doc), retain=True)
    # Release 7 fetched from its retained topic and cached; b3's release 9 is not cached.
    assert wait_for(lambda: rig.desired_releases() == {"b1": 7}), rig.gateway.stderr_text()[-3000:]
    assert rig.db("SELECT seq FROM releases") == [(7,)]
    assert wait_for(
        lambda: (
            (rig.last_state() or {}).get("health", {}).get("control", {}).get("desired_seq") == 1
        )
    )
    state = rig.last_state()
    assert state is not None
    assert state["type"] == "state"
    assert state["gateway"] == "gw-takengon-1"
    assert state["health"]["disk_total"] > 0
    assert refused(rig) == {}


def test_every_forged_replayed_or_misaddressed_message_is_refused_and_counted(
    rig: Setup,
) -> None:
    fleet = rig.start()
    desired, commands = topic(topics.DESIRED), topic(topics.COMMANDS)
    good = rig.operator.seal(rig.document(2, {"b1": 0}))
    fleet.publish(desired, good, retain=True)
    assert wait_for(lambda: rig.db("SELECT seq FROM control_desired") == [(2,)])

    operator = rig.operator
    doc = rig.document(3, {"b1": 0})
    envelope = cbor2.loads(operator.seal(doc))
    # Signed by a key of its own, beside the operator's certificate.
    other = Operator(root=operator.root, key=Ed25519PrivateKey.generate())
    forged = dict(envelope, signed=cbor2.loads(other.seal(doc))["signed"])
    cases = {
        "bad_signature": cbor2.dumps(forged),
        "unsigned": cbor2.dumps(doc.payload()),
        "untrusted_key": Operator().seal(doc),  # another root
        "expired_cert": dataclasses.replace(operator, valid_s=(-7200, -3600)).seal(doc),
        "revoked": dataclasses.replace(operator, revoked=(operator.kid,), list_seq=2).seal(doc),
        "wrong_gateway": operator.seal(rig.document(3, {"b1": 0}, gateway="gw-other")),
        "stale": operator.seal(rig.document(1, {"b1": 0})),
        "replayed": operator.seal(rig.document(2, {"b1": 5})),  # applied seq, other bytes
    }
    for data in cases.values():
        fleet.publish(desired, data)
    fleet.publish(desired, good)  # the retained document again: nothing happens
    ping = rig.command("ping")
    now = int(time.time())
    command_cases = [
        operator.seal(ping),
        operator.seal(ping),  # replayed nonce
        operator.seal(rig.command("ping", issued=now - 900, expires=now - 300)),  # expired
        operator.seal(rig.command("ping", expires=now + 30 * 86_400)),  # too far
    ]
    for data in command_cases:
        fleet.publish(commands, data)
    expected = {reason: 1 for reason in cases}
    expected.update(replayed=2, expired=1, too_far=1)
    assert wait_for(lambda: refused(rig) == expected, 30), (
        refused(rig),
        rig.gateway.stderr_text()[-3000:],
    )
    assert rig.db("SELECT seq FROM control_desired") == [(2,)]
    # One reply, to the first ping only.
    assert wait_for(lambda: len(rig.replies()) == 1)
    (reply,) = rig.replies()
    assert reply["id"] == ping.id
    assert reply["ok"] is True
    # Each refusal is also an event, published signed.
    assert wait_for(lambda: refusal_events(rig) == expected), refusal_events(rig)


def refusal_events(rig: Setup) -> dict[str, int]:
    assert rig.fleet is not None
    counts: dict[str, int] = {}
    for data in rig.fleet.messages("events"):
        payload = messages.verify_up(data, rig.gateway_key(), site=SITE, gateway=GATEWAY)
        for event in payload["events"]:
            if event["kind"] == "refused":
                reason = event["detail"]["reason"]
                counts[reason] = counts.get(reason, 0) + 1
    return counts


def test_the_stored_document_is_acted_on_after_a_restart_with_no_broker(rig: Setup) -> None:
    fleet = rig.start()
    fleet.publish(topics.release_topic(7), rig.release_file(7), retain=True)
    fleet.publish(
        topic(topics.DESIRED),
        rig.operator.seal(rig.document(1, {"b1": 7}, releases=(7,))),
        retain=True,
    )
    assert wait_for(lambda: rig.desired_releases() == {"b1": 7})
    assert rig.gateway.stop() == 0
    fleet.close()
    rig.fleet = None
    rig.broker.stop()
    # Lost meanwhile (an operator's mistake): the stored document puts it back.
    db = sqlite3.connect(rig.gateway.state_dir / "gateway.db")
    db.execute("DELETE FROM desired_releases")
    db.commit()
    db.close()
    rig.gateway.start()
    assert wait_for(lambda: rig.desired_releases() == {"b1": 7}), rig.gateway.stderr_text()[-3000:]
    # The broker comes back: the control process reconnects and publishes its state.
    rig.broker.start()
    rig.fleet = Fleet(rig.broker)
    assert wait_for(lambda: rig.last_state() is not None, 45)
    assert rig.last_state()["health"]["control"]["desired_seq"] == 1  # type: ignore[index]
