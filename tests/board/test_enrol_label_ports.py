"""Offline enrolment files (signed, verified, refused when forged or tampered with), the
label's QR code, and which serial ports ``simpul board list`` names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from serial.tools.list_ports_common import ListPortInfo

from fleet.board.enrol import Enrolment, sign_enrolment, write_enrolment
from fleet.board.label import qr_text, render
from fleet.board.ports import board_ports
from fleet.store import FleetStore
from gateway.codec import cose
from tests.board.conftest import GATEWAY, SITE, FleetFixture, make_fleet
from tests.support import ROOT

ENROLMENT = Enrolment("tkg-air-0042", "air", SITE, GATEWAY, 1767312000, "ani")


def fleet_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def boards_and_audit(fleet: FleetFixture) -> tuple[list[str], list[tuple[str, str, str]]]:
    with FleetStore(fleet.db, create=False) as store:
        boards = [b.board_id for b in store.boards()]
        audit = [(e.action, e.target, e.result) for e in store.audit_entries()]
    return boards, audit


def test_an_offline_enrolment_file_imports_once(tmp_path: Path, fleet: FleetFixture) -> None:
    path = tmp_path / "tkg-air-0042.enrol"
    write_enrolment(fleet.dir, ENROLMENT, path)
    done = fleet_cli("fleet", "boards", "import", str(path), "--fleet-dir", str(fleet.dir))
    assert done.returncode == 0, done.stderr
    assert "board tkg-air-0042 (air) enrolled" in done.stdout
    boards, audit = boards_and_audit(fleet)
    assert boards == ["tkg-air-0042"]
    assert audit[-1] == ("board.import", "tkg-air-0042", "ok")
    again = fleet_cli("fleet", "boards", "import", str(path), "--fleet-dir", str(fleet.dir))
    assert again.returncode == 1
    assert "already enrolled" in again.stderr


def _tampered(data: bytes) -> bytes:
    outer = cbor2.loads(data)
    tag = cbor2.loads(outer["signed"])
    protected, unprotected, payload, signature = tag.value
    body = cbor2.loads(payload)
    body["site"] = "elsewhere"
    tampered = cbor2.CBORTag(tag.tag, [protected, unprotected, cbor2.dumps(body), signature])
    outer["signed"] = cbor2.dumps(tampered)
    return bytes(cbor2.dumps(outer))


def _forged(data: bytes) -> bytes:
    """Signed by a key of the forger's own, with the real certificate beside it."""
    outer = cbor2.loads(data)
    key = Ed25519PrivateKey.generate()
    body = dict(ENROLMENT.payload(), board="tkg-air-0666")
    kid = cbor2.loads(outer["signed"]).value[0]
    outer["signed"] = cose.sign(key, cbor2.dumps(body), kid=cbor2.loads(kid)[4])
    return bytes(cbor2.dumps(outer))


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_tampered, "signature does not verify"),
        (_forged, "signature does not verify"),
        (lambda data: data[:-5], "not an enrolment file"),
        ("other fleet", "never certified"),
    ],
)
def test_a_forged_or_tampered_file_is_refused_and_changes_nothing(
    tmp_path: Path, fleet: FleetFixture, damage: object, why: str
) -> None:
    if damage == "other fleet":
        data = sign_enrolment(make_fleet(tmp_path / "other").dir, ENROLMENT)
    else:
        assert callable(damage)
        data = damage(sign_enrolment(fleet.dir, ENROLMENT))
    path = tmp_path / "bad.enrol"
    path.write_bytes(data)
    before, _ = boards_and_audit(fleet)
    done = fleet_cli("fleet", "boards", "import", str(path), "--fleet-dir", str(fleet.dir))
    assert done.returncode == 1
    assert why in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    boards, audit = boards_and_audit(fleet)
    assert boards == before == []
    assert audit[-1][0] == "board.import"
    assert audit[-1][2].startswith("error:")


def test_the_label_qr_code_decodes_to_the_enrolment() -> None:
    image = render(ENROLMENT)
    assert image.size == (591, 354)  # 50 x 30 mm at 300 dpi
    found = zxingcpp.read_barcodes(image.convert("L"))
    assert [f.text for f in found] == [qr_text(ENROLMENT)]
    assert json.loads(found[0].text) == {
        "id": "tkg-air-0042", "kind": "air", "site": SITE, "enrolled": "2026-01-02"
    }  # fmt: skip


def _port(device: str, vid: int | None, pid: int | None) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid = vid, pid
    info.serial_number = "0001" if vid else None
    return info


def test_board_list_names_esp32_bridges_and_skips_other_ports() -> None:
    ports = [
        _port("/dev/ttyUSB1", 0x1A86, 0x7523),
        _port("/dev/ttyUSB0", 0x10C4, 0xEA60),
        _port("/dev/ttyACM0", 0x303A, 0x1001),
        _port("/dev/ttyUSB2", 0x0403, 0x6015),
        _port("/dev/ttyACM1", 0x2341, 0x0043),  # an Arduino Uno
        _port("/dev/ttyS0", None, None),  # the laptop's own UART
        _port("/dev/ttyUSB3", 0x1A86, 0x55D4),
    ]
    named = [(p.device, p.bridge, p.usb_id) for p in board_ports(ports)]
    assert named == [
        ("/dev/ttyACM0", "ESP32 native USB", "303A:1001"),
        ("/dev/ttyUSB0", "CP210x", "10C4:EA60"),
        ("/dev/ttyUSB1", "CH340", "1A86:7523"),
        ("/dev/ttyUSB2", "FTDI FT231X", "0403:6015"),
        ("/dev/ttyUSB3", "CH9102", "1A86:55D4"),
    ]


def test_an_offline_file_brings_the_boards_key_and_a_bad_key_is_refused_whole(
    tmp_path: Path, fleet: FleetFixture
) -> None:
    import dataclasses

    from fleet.board.enrol import import_enrolment, verify_enrolment
    from fleet.board.errors import EnrolmentRefused
    from fleet.board.provision import new_board_key
    from fleet.keys import root_public_key

    keyed = dataclasses.replace(ENROLMENT, oscore=new_board_key(ENROLMENT.board_id))
    assert keyed.oscore is not None
    root = root_public_key(fleet.dir)
    # A well-signed file whose key is not key material: refused, nothing enrolled.
    bad_body = dict(keyed.payload(), oscore={"sid": "01", "secret": "00"})
    with pytest.raises(EnrolmentRefused, match="OSCORE key is unusable"):
        verify_enrolment(_resigned(sign_enrolment(fleet.dir, keyed), bad_body, fleet), root,
                         frozenset())  # fmt: skip
    assert boards_and_audit(fleet)[0] == []
    # The good file: the board and its key, the audit naming the fingerprint only.
    import_enrolment(fleet.dir, sign_enrolment(fleet.dir, keyed), operator="ani")
    with FleetStore(fleet.db, create=False) as store:
        assert store.board_key(keyed.board_id) == (keyed.oscore, 1)
        entry = store.audit_entries()[-1]
    assert entry.detail["oscore_key"] == keyed.oscore.fingerprint
    assert keyed.oscore.secret.hex() not in json.dumps(entry.detail)


def _resigned(data: bytes, body: dict[str, object], fleet: FleetFixture) -> bytes:
    """The file's envelope around ``body``, signed by the fleet's own operator key."""
    from fleet.keys import load_operator

    signer = load_operator(fleet.dir)
    outer = cbor2.loads(data)
    outer["signed"] = cose.sign(signer.key, cbor2.dumps(body), kid=signer.kid)
    return bytes(cbor2.dumps(outer))
