"""Enrolling a flashed board with the fleet: in fleet.db now, or by a signed file later.

Online, the board is enrolled through the same audited change as ``simpul fleet boards add``
(``fleet.inventory.audited_change``, action ``board.add``). Offline (a laptop in the field
with no fleet.db), ``simpul board flash --offline FILE`` writes an **enrolment file** signed
by the fleet's operator key, which ``simpul fleet boards import FILE`` verifies and applies
(action ``board.import``). The file is the control channel's envelope
(``gateway.control.messages``) around an enrolment::

    envelope = {"cert": bstr,         ; the operator key's certificate (by the root key)
                "revocations": bstr,  ; the root's revocation list when it was signed
                "signed": bstr}       ; COSE_Sign1 by the operator key over:
    enrolment = {"type": "enrolment", "v": 1, "board": tstr, "kind": tstr, "site": tstr,
                 "gateway": tstr, "enrolled": uint (Unix seconds), "technician": tstr,
                 ? "oscore": {"sid": tstr, "rid": tstr, "secret": tstr, "salt": tstr}}

``oscore`` is the board's OSCORE key material (``gateway.oscore.keys``, hex), which fleet.db
keeps and the fleet seals to the board's gateway. The file carries it signed but **not
encrypted**: it is written readable by its owner only, and belongs on the technician's
laptop until it is imported, then deleted.

Import checks, refusing the whole file at the first that fails: the form; the certificate
chains to this fleet's root and is for role operator; the operator key is not revoked by the
fleet's *current* list (a key revoked since the file was signed signs nothing more); the
signature; the enrolment's fields. Nothing in fleet.db changes for a refused file but the
audit entry that says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import cbor2

from fleet import keyfiles
from fleet.board.errors import EnrolmentRefused
from fleet.certs import ROLE_OPERATOR, verify_certificate, verify_revocations
from fleet.errors import FleetError
from fleet.keys import FleetDir, load_operator, root_public_key
from fleet.records import Board
from fleet.store import DB_NAME, FleetStore
from gateway.codec import cose
from gateway.codec.senml import is_board_id
from gateway.errors import GatewayError
from gateway.oscore.keys import KeyMaterial

TYPE: Final = "enrolment"
FORMAT_VERSION: Final = 1
MAX_FILE_BYTES: Final = 64 * 1024
_FIELDS: Final = frozenset({"type", "v", "board", "kind", "site", "gateway", "enrolled",
                            "technician"})  # fmt: skip
_OPTIONAL: Final = frozenset({"oscore"})
_ENVELOPE: Final = frozenset({"cert", "revocations", "signed"})


@dataclass(frozen=True)
class Enrolment:
    """A board's enrolment: what the label shows and fleet.db records."""

    board_id: str
    kind: str
    site: str
    gateway_id: str
    enrolled: int  # Unix seconds
    technician: str
    #: The board's OSCORE key material, as written on its flash.
    oscore: KeyMaterial | None = field(default=None, repr=False)

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE,
            "v": FORMAT_VERSION,
            "board": self.board_id,
            "kind": self.kind,
            "site": self.site,
            "gateway": self.gateway_id,
            "enrolled": self.enrolled,
            "technician": self.technician,
        }
        if self.oscore is not None:
            body["oscore"] = self.oscore.to_json()
        return body

    def keep_key(self, store: FleetStore) -> None:
        """fleet.db keeps the board's key (inside the enrolment's transaction)."""
        if self.oscore is not None:
            store.set_board_key(self.board_id, self.oscore, at_ms=self.enrolled * 1000)

    def audit_detail(self) -> dict[str, Any]:
        """What the audit log says of the key: its Sender ID and fingerprint, never the key."""
        if self.oscore is None:
            return {}
        return {"oscore_sid": self.oscore.sid.hex(), "oscore_key": self.oscore.fingerprint}


def enrol(fleet_dir: Path, enrolment: Enrolment, *, operator: str) -> Board:
    """Enrol the board in ``fleet_dir``'s fleet.db, audited as ``board.add``."""
    from fleet.inventory import audited_change

    detail = {"kind": enrolment.kind, "site": enrolment.site,
              "gateway": enrolment.gateway_id, "tags": [], "by": "simpul board flash",
              **enrolment.audit_detail()}  # fmt: skip
    with FleetStore(fleet_dir / DB_NAME, create=False) as store:
        return audited_change(
            store, operator, "board.add", enrolment.board_id, detail,
            lambda s: _enrol(s, enrolment),
        )  # fmt: skip


def _enrol(store: FleetStore, enrolment: Enrolment) -> Board:
    board = store.enroll_board(
        enrolment.board_id, kind=enrolment.kind, site_id=enrolment.site,
        gateway_id=enrolment.gateway_id, at_ms=enrolment.enrolled * 1000,
    )  # fmt: skip
    enrolment.keep_key(store)
    return board


def sign_enrolment(fleet_dir: Path, enrolment: Enrolment) -> bytes:
    """The enrolment file's bytes, signed with the fleet's operator key."""
    signer = load_operator(fleet_dir)
    signed = cose.sign(signer.key, bytes(cbor2.dumps(enrolment.payload())), kid=signer.kid)
    return bytes(
        cbor2.dumps(
            {"cert": signer.certificate, "revocations": signer.revocations, "signed": signed}
        )
    )


def write_enrolment(fleet_dir: Path, enrolment: Enrolment, out: Path) -> None:
    keyfiles.write_atomic(out, sign_enrolment(fleet_dir, enrolment), mode=0o600)


def verify_enrolment(data: bytes, root: bytes, revoked: frozenset[bytes]) -> Enrolment:
    """The enrolment in ``data`` if the fleet's operator key (certified by ``root``, not in
    ``revoked``) signed it; else :class:`EnrolmentRefused` saying why."""
    if len(data) > MAX_FILE_BYTES:
        raise EnrolmentRefused("not an enrolment file: too large")
    try:
        outer = cose.loads(data, "enrolment file")
    except (cose.CoseError, GatewayError, ValueError) as exc:
        raise EnrolmentRefused(f"not an enrolment file: {exc}") from None
    if not isinstance(outer, dict) or set(outer) != _ENVELOPE:
        raise EnrolmentRefused("not an enrolment file: no certificate, list and signature")
    cert_bytes, signed = outer["cert"], outer["signed"]
    if not isinstance(cert_bytes, bytes) or not isinstance(signed, bytes):
        raise EnrolmentRefused("not an enrolment file: a field is not a byte string")
    try:
        cert = verify_certificate(cert_bytes, root, role=ROLE_OPERATOR, now=None)
    except (FleetError, GatewayError, ValueError) as exc:
        raise EnrolmentRefused(f"signed by a key this fleet never certified: {exc}") from None
    if cert.kid in revoked:
        raise EnrolmentRefused(f"signed by operator key {cert.kid.hex()}, which is revoked")
    try:
        _, payload_bytes = cose.verify(signed, cert.key)
        body = cose.loads(payload_bytes, "enrolment")
    except (GatewayError, ValueError) as exc:
        raise EnrolmentRefused(f"the signature does not verify: {exc}") from None
    if (
        not isinstance(body, dict)
        or not _FIELDS <= set(body) <= _FIELDS | _OPTIONAL
        or body.get("type") != TYPE
    ):
        raise EnrolmentRefused("the signed content is not an enrolment")
    if body["v"] != FORMAT_VERSION:
        raise EnrolmentRefused(f"enrolment format {body['v']!r}, this fleet reads {FORMAT_VERSION}")
    texts = ("board", "kind", "site", "gateway", "technician")
    if not all(isinstance(body[k], str) and body[k] for k in texts):
        raise EnrolmentRefused("an enrolment field is empty or not text")
    if not is_board_id(body["board"]):
        raise EnrolmentRefused(f"{body['board']!r} is not a board id")
    if not isinstance(body["enrolled"], int) or body["enrolled"] < 0:
        raise EnrolmentRefused("the enrolment date is not a time")
    material = None
    if "oscore" in body:
        if not isinstance(body["oscore"], dict):
            raise EnrolmentRefused("the board's OSCORE key is not a map")
        try:
            material = KeyMaterial.from_json(body["oscore"])
        except (GatewayError, KeyError) as exc:
            raise EnrolmentRefused(f"the board's OSCORE key is unusable: {exc}") from None
    return Enrolment(body["board"], body["kind"], body["site"], body["gateway"],
                     body["enrolled"], body["technician"], material)  # fmt: skip


def current_revoked(fleet_dir: Path, root: bytes) -> frozenset[bytes]:
    """The kids the fleet's current revocation list names."""
    path = FleetDir(fleet_dir).revocations_file
    try:
        return frozenset(verify_revocations(path.read_bytes(), root).revoked)
    except OSError:
        return frozenset()


def import_enrolment(fleet_dir: Path, data: bytes, *, operator: str) -> Board:
    """Verify an enrolment file and enrol its board, audited as ``board.import`` (a refused
    file is audited too, and changes nothing else)."""
    from fleet.inventory import audited_change

    root = root_public_key(fleet_dir)
    digest = hashlib.sha256(data).hexdigest()
    with FleetStore(fleet_dir / DB_NAME, create=False) as store:
        try:
            enrolment = verify_enrolment(data, root, current_revoked(fleet_dir, root))
        except EnrolmentRefused as exc:
            store.append_audit(operator, "board.import", "-", {"file_sha256": digest},
                               f"error: {exc}")  # fmt: skip
            raise
        detail = {"kind": enrolment.kind, "site": enrolment.site,
                  "gateway": enrolment.gateway_id, "technician": enrolment.technician,
                  "enrolled": enrolment.enrolled, "file_sha256": digest,
                  **enrolment.audit_detail()}  # fmt: skip
        return audited_change(
            store, operator, "board.import", enrolment.board_id, detail,
            lambda s: _enrol(s, enrolment),
        )  # fmt: skip
