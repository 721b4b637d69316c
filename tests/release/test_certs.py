"""Certificates and revocation lists (fleet/certs.py): what the root signs, checked strictly."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from pycose.keys.curves import Ed25519
from pycose.keys.okp import OKPKey

from fleet.certs import (
    decode_certificate,
    decode_revocations,
    issue_certificate,
    issue_revocations,
    verify_certificate,
    verify_revocations,
)
from fleet.errors import BadCertificate, BadRevocations, CertificateExpired
from gateway.codec import cose
from tests.release.chain import DAY, NOW, Chain, seeded_key
from tests.release.test_cose_codec import pycose_decode


def signed_by_root(chain: Chain, payload: dict[str, Any]) -> bytes:
    return cose.sign(chain.root, cbor2.dumps(payload), kid=cose.key_id(chain.root_public))


def cert_payload(chain: Chain, **changes: Any) -> dict[str, Any]:
    public = cose.public_bytes(chain.release)
    payload: dict[str, Any] = {
        "type": "cert",
        "v": 1,
        "serial": 1,
        "role": "release",
        "kid": cose.key_id(public),
        "key": public,
        "not_before": NOW,
        "not_after": NOW + DAY,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def test_certificate_verifies_and_says_what_it_certifies(chain: Chain) -> None:
    cert = verify_certificate(chain.certificate(), chain.root_public, now=NOW + DAY)
    assert cert.key == cose.public_bytes(chain.release)
    assert cert.kid == chain.release_kid
    assert (cert.role, cert.serial) == ("release", 1)
    assert (cert.not_before, cert.not_after) == (NOW, NOW + 730 * DAY)
    assert cert.issuer == cose.key_id(chain.root_public)


def test_pycose_verifies_a_certificate_and_a_revocation_list(chain: Chain) -> None:
    for signed in (chain.certificate(), chain.revocations((b"\x01" * 8,))):
        message = pycose_decode(signed)
        message.key = OKPKey(crv=Ed25519, x=chain.root_public)
        assert message.verify_signature()
        message.key = OKPKey(crv=Ed25519, x=cose.public_bytes(chain.release))
        assert not message.verify_signature()


def test_certificate_not_signed_by_the_root_is_refused(chain: Chain) -> None:
    impostor = seeded_key("not the root")
    with pytest.raises(BadCertificate, match="not signed by the root key"):
        verify_certificate(chain.certificate(by=impostor), chain.root_public, now=None)
    # Nor does it help to name the root's kid in the header.
    forged = cose.sign(
        impostor, cbor2.dumps(cert_payload(chain)), kid=cose.key_id(chain.root_public)
    )
    with pytest.raises(BadCertificate, match="signature does not verify"):
        verify_certificate(forged, chain.root_public, now=None)


def test_certificate_outside_its_validity_is_refused(chain: Chain) -> None:
    cert = chain.certificate(not_before=NOW, not_after=NOW + DAY)
    verify_certificate(cert, chain.root_public, now=NOW)
    verify_certificate(cert, chain.root_public, now=NOW + DAY)
    with pytest.raises(
        CertificateExpired, match="to 2025-06-16T15:06:40Z, not at 2025-06-16T15:06:41Z"
    ):
        verify_certificate(cert, chain.root_public, now=NOW + DAY + 1)
    with pytest.raises(CertificateExpired):
        verify_certificate(cert, chain.root_public, now=NOW - 1)
    verify_certificate(cert, chain.root_public, now=None)  # a board without time


def test_certificate_for_another_role_is_refused(chain: Chain) -> None:
    operator = signed_by_root(chain, cert_payload(chain, role="operator"))
    with pytest.raises(BadCertificate, match="role 'operator', not 'release'"):
        verify_certificate(operator, chain.root_public, now=NOW)
    with pytest.raises(ValueError, match="unknown role"):
        issue_certificate(
            chain.root, chain.root_public, serial=1, not_before=0, not_after=1, role="x"
        )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kid": b"\x00" * 8}, "kid is not the key's"),
        ({"key": b"\x00" * 31}, "key is not 32 bytes"),
        ({"extra": 1}, "unknown field"),
        ({"not_after": None}, "lacks not_after"),
        ({"not_after": NOW - 1}, "not_after is before not_before"),
        ({"serial": -1}, "serial is not an unsigned integer"),
        ({"serial": True}, "serial is not an unsigned integer"),
        ({"not_before": 1.0}, "not_before is not an unsigned integer"),
        ({"v": 2}, "format version 2"),
        ({"type": "revocations"}, "type is 'revocations', not 'cert'"),
        ({"role": 1}, "role is not text"),
    ],
)
def test_malformed_certificate_is_refused(
    chain: Chain, changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(BadCertificate, match=reason):
        verify_certificate(
            signed_by_root(chain, cert_payload(chain, **changes)), chain.root_public, now=NOW
        )


def test_a_revocation_list_is_no_certificate_and_the_reverse(chain: Chain) -> None:
    with pytest.raises(BadCertificate, match="type is 'revocations'"):
        decode_certificate(chain.revocations())
    with pytest.raises(BadRevocations, match="type is 'cert'"):
        decode_revocations(chain.certificate())


def test_revocation_list_verifies_and_lists_kids(chain: Chain) -> None:
    kids = (b"\x01" * 8, b"\x02" * 8)
    listed = verify_revocations(chain.revocations(kids, seq=3), chain.root_public, seen=3)
    assert (listed.seq, listed.revoked, listed.issued) == (3, kids, NOW)


def test_revocation_list_older_than_one_seen_is_refused(chain: Chain) -> None:
    with pytest.raises(BadRevocations, match="revocation list 2 is older than list 3"):
        verify_revocations(chain.revocations(seq=2), chain.root_public, seen=3)


def test_revocation_list_not_signed_by_the_root_is_refused(chain: Chain) -> None:
    with pytest.raises(BadRevocations, match="not signed by the root key"):
        verify_revocations(chain.revocations(by=chain.release), chain.root_public)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"revoked": [b"\x01" * 8, b"\x01" * 8]}, "listed twice"),
        ({"revoked": [b"\x01" * 7]}, "not a list of 8-byte kids"),
        ({"revoked": b"\x01" * 8}, "not a list"),
        ({"seq": 0}, "seq must be 1 or more"),
        ({"issued": -5}, "issued is not an unsigned integer"),
        ({"more": 1}, "unknown field"),
    ],
)
def test_malformed_revocation_list_is_refused(
    chain: Chain, payload: dict[str, Any], reason: str
) -> None:
    body = {"type": "revocations", "v": 1, "seq": 1, "revoked": [], "issued": NOW, **payload}
    with pytest.raises(BadRevocations, match=reason):
        verify_revocations(signed_by_root(chain, body), chain.root_public)


def test_issuing_refuses_what_would_be_refused() -> None:
    root = seeded_key("r")
    with pytest.raises(ValueError, match="seq"):
        issue_revocations(root, seq=0, revoked=(), issued=0)
    with pytest.raises(ValueError, match="8 bytes"):
        issue_revocations(root, seq=1, revoked=(b"x",), issued=0)
    with pytest.raises(ValueError, match="not_before"):
        issue_certificate(root, bytes(32), serial=1, not_before=5, not_after=4)
    # Repeats are dropped, order kept.
    listed = decode_revocations(
        issue_revocations(root, seq=1, revoked=(b"b" * 8, b"a" * 8, b"b" * 8), issued=0)
    )
    assert listed.revoked == (b"b" * 8, b"a" * 8)
