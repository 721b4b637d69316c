"""The control channel's codec: what verifies, and every forged form refused with its reason."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.certs import ROLE_RELEASE
from gateway.codec import cose
from gateway.control import messages
from gateway.control.messages import (
    BoardEntry,
    Command,
    ControlRefused,
    Desired,
    Limits,
    RolloutPlan,
    Wave,
)
from tests.control.keys import Operator

NOW = 1_780_000_000
SITE, GATEWAY = "takengon", "gw-takengon-1"


def document(seq: int = 7, **changes: Any) -> Desired:
    plan = RolloutPlan(
        id="r1",
        release=5,
        revert=6,
        state="running",
        waves=(Wave(("b1",), 60), Wave(("b2", "b3"), 120)),
        limits=Limits(failures=0.25, confirm_s=600, silent_s=300, reboots=2),
        window=(60, 300),
    )
    base = Desired(
        site=SITE,
        gateway=GATEWAY,
        seq=seq,
        issued=NOW,
        boards={"b1": BoardEntry("air", 4), "b2": BoardEntry("water", 4), "b3": BoardEntry("air")},
        releases=(4, 5, 6),
        rollout=plan,
        config={"state_interval_s": 10},
    )
    return dataclasses.replace(base, **changes)


def command(**changes: Any) -> Command:
    base = Command(
        site=SITE,
        gateway=GATEWAY,
        id=os.urandom(16),
        issued=NOW,
        expires=NOW + 600,
        action="reboot",
        board="b1",
    )
    return dataclasses.replace(base, **changes)


def verify(op: Operator, data: bytes, *, seen: int = 0, root: bytes | None = None) -> Any:
    return messages.verify_envelope(
        data,
        op.root_public if root is None else root,
        now=NOW,
        revocations_seen=seen,
        site=SITE,
        gateway=GATEWAY,
    )


def refused(op: Operator, data: bytes, **kwargs: Any) -> str:
    with pytest.raises(ControlRefused) as caught:
        verify(op, data, **kwargs)
    return caught.value.why


def test_desired_document_round_trips_through_its_envelope() -> None:
    op = Operator()
    doc = document()
    verified = verify(op, op.seal(doc, NOW))
    assert verified.kind == "desired"
    assert verified.message == doc
    assert verified.operator == op.kid
    assert verified.revocations_seq == 1


def test_command_round_trips_through_its_envelope() -> None:
    op = Operator()
    cmd = command()
    verified = verify(op, op.seal(cmd, NOW))
    assert verified.kind == "command"
    assert verified.message == cmd


def test_a_tampered_payload_is_a_bad_signature() -> None:
    op = Operator()
    data = op.seal(document(), NOW)
    outer = cbor2.loads(data)
    signed = cbor2.loads(outer["signed"])
    body = cbor2.loads(signed.value[2])
    body["boards"]["b1"]["release"] = 99
    parts = list(signed.value)
    parts[2] = cbor2.dumps(body)
    outer["signed"] = cbor2.dumps(cbor2.CBORTag(18, parts))
    assert refused(op, cbor2.dumps(outer)) == "bad_signature"


def test_a_key_the_root_never_certified_is_refused() -> None:
    op = Operator()
    intruder = Operator(root=op.root)  # same root, own key, but signs with another
    data = messages.envelope(
        Ed25519PrivateKey.generate(), op.certificate(NOW), op.revocations(NOW), document()
    )
    assert refused(intruder, data) == "bad_signature"


def test_a_certificate_from_another_root_is_untrusted() -> None:
    op = Operator()
    assert refused(op, Operator().seal(document(), NOW)) == "untrusted_key"


def test_a_release_key_cannot_sign_the_control_channel() -> None:
    op = Operator(role=ROLE_RELEASE)
    assert refused(op, op.seal(document(), NOW)) == "untrusted_key"


def test_an_expired_operator_certificate_is_refused() -> None:
    op = Operator(valid_s=(-7200, -3600))
    assert refused(op, op.seal(document(), NOW)) == "expired_cert"


def test_a_revoked_operator_key_is_refused() -> None:
    op = Operator()
    op.revoked = (op.kid,)
    assert refused(op, op.seal(document(), NOW)) == "revoked"


def test_an_older_revocation_list_than_one_seen_is_stale() -> None:
    op = Operator(list_seq=2)
    assert refused(op, op.seal(document(), NOW), seen=3) == "stale"


def test_plain_cbor_without_signature_is_unsigned() -> None:
    op = Operator()
    assert refused(op, cbor2.dumps(document().payload())) == "unsigned"
    outer = {"cert": op.certificate(NOW), "revocations": op.revocations(NOW), "signed": b"x"}
    assert refused(op, cbor2.dumps(outer)) == "unsigned"


@pytest.mark.parametrize("data", [b"", b"\xff", b"\x18", b"garbage" * 10, b"\xa0" * 3])
def test_garbage_is_malformed_or_unsigned(data: bytes) -> None:
    assert refused(Operator(), data) in ("malformed", "unsigned")


def test_a_document_for_another_gateway_is_refused() -> None:
    op = Operator()
    assert refused(op, op.seal(document(gateway="gw-tegal-1"), NOW)) == "wrong_gateway"
    assert refused(op, op.seal(command(site="tegal"), NOW)) == "wrong_gateway"


def _signed_payload(op: Operator, payload: dict[str, Any]) -> bytes:
    signed = cose.sign(op.key, cbor2.dumps(payload), kid=op.kid)
    return cbor2.dumps(
        {"cert": op.certificate(NOW), "revocations": op.revocations(NOW), "signed": signed}
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.update(extra=1),
        lambda p: p.pop("seq"),
        lambda p: p.update(v=2),
        lambda p: p.update(seq=-1),
        lambda p: p.update(boards={"bad id!": {"kind": "air", "release": 1}}),
        lambda p: p.update(boards={"b1": {"kind": "air"}}),
        lambda p: p.update(releases=["4"]),
        lambda p: p["rollout"].update(state="exploded"),
        lambda p: p["rollout"]["limits"].update(failures=1.5),
        lambda p: p["rollout"].update(window=[0, 2000]),
        lambda p: p["rollout"].update(passed=-2),
        lambda p: p.update(config={"x": [1]}),
        lambda p: p.update(type="desire"),
    ],
)
def test_a_signed_but_misshapen_document_is_malformed(edit: Any) -> None:
    op = Operator()
    payload = document().payload()
    edit(payload)
    assert refused(op, _signed_payload(op, payload)) == "malformed"


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.update(id=b"short"),
        lambda p: p.update(action="format"),
        lambda p: p.update(board=""),
        lambda p: p.update(expires="soon"),
    ],
)
def test_a_signed_but_misshapen_command_is_malformed(edit: Any) -> None:
    op = Operator()
    payload = command().payload()
    edit(payload)
    assert refused(op, _signed_payload(op, payload)) == "malformed"


def test_command_times_are_checked() -> None:
    ok = command()
    messages.check_command_time(ok, now=NOW, max_ttl_s=3600)
    cases = {
        "expired": command(expires=NOW),
        "too_far": command(expires=NOW + 7200),
    }
    for why, cmd in cases.items():
        with pytest.raises(ControlRefused) as caught:
            messages.check_command_time(cmd, now=NOW, max_ttl_s=3600)
        assert caught.value.why == why
    with pytest.raises(ControlRefused) as caught:
        messages.check_command_time(command(issued=NOW + 3600), now=NOW, max_ttl_s=86_400)
    assert caught.value.why == "too_far"


def test_an_oversized_envelope_is_refused_before_parsing() -> None:
    data = b"\x5a" + (messages.MAX_MESSAGE_BYTES + 1).to_bytes(4, "big")
    assert refused(Operator(), data + bytes(messages.MAX_MESSAGE_BYTES + 1)) == "malformed"


def test_up_messages_verify_with_the_gateways_key_only() -> None:
    key = Ed25519PrivateKey.generate()
    payload = {"type": "state", "v": 1, "site": SITE, "gateway": GATEWAY, "at": 1, "seq": 1}
    data = messages.sign_up(key, payload)
    public = cose.public_bytes(key)
    assert messages.verify_up(data, public, site=SITE, gateway=GATEWAY) == payload
    other = cose.public_bytes(Ed25519PrivateKey.generate())
    with pytest.raises(ControlRefused) as caught:
        messages.verify_up(data, other, site=SITE, gateway=GATEWAY)
    assert caught.value.why == "bad_signature"
    with pytest.raises(ControlRefused) as caught:
        messages.verify_up(data, {cose.key_id(other): other}, site=SITE, gateway=GATEWAY)
    assert caught.value.why == "untrusted_key"
    with pytest.raises(ControlRefused) as caught:
        messages.verify_up(data, public, site=SITE, gateway="gw-other")
    assert caught.value.why == "wrong_gateway"
    with pytest.raises(ControlRefused) as caught:
        messages.verify_up(cbor2.dumps(payload), public, site=SITE, gateway=GATEWAY)
    assert caught.value.why == "unsigned"


@pytest.mark.parametrize(
    ("setting", "value"),
    [("site", "a/b"), ("site", "city+"), ("gateway_id", "gw#1"), ("site", ""), ("site", "x" * 65)],
)
def test_a_site_or_gateway_id_that_cannot_name_a_topic_is_refused(setting: str, value: str) -> None:
    from gateway.config import load_config
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match=f"{setting} must be 1 to 64 characters"):
        load_config(env={}, overrides={setting: value})
    assert load_config(env={}, overrides={"site": "Pematang Siantar"}).site == "Pematang Siantar"
