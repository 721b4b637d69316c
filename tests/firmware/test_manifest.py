"""manifest.py (the board's release checks) on CPython: the shared module's literal vectors
are what the host's release code makes (tests/release/chain.py, fleet/manifest.py), and the
board and the host agree on every verdict. The VM runs mpy/mpy_test_manifest.py.

``python -m tests.firmware.test_manifest`` prints the vectors' literal block, to paste into
mpy/mpy_test_manifest.py when the format changes.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any, cast

import cbor2
import errors as board_errors
import manifest
import mpy_test_manifest as shared
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fleet.errors
from fleet.manifest import verify_manifest
from gateway.codec import cose
from tests.release.chain import APP_FILES, DAY, NOW, Chain, seeded_key


def vectors() -> dict[str, bytes]:
    """The board's test vectors, made by the host's code from the deterministic chain."""
    chain = Chain()
    good = chain.manifest()
    body = cbor2.loads(good).value[2]
    shadow: dict[str, Any] = cbor2.loads(body)
    shadow["files"] = [*shadow["files"], ["slots.mpy", hashlib.sha256(b"x").digest(), 1]]
    shadow["total"] += 1
    cert: dict[str, Any] = cbor2.loads(cbor2.loads(chain.certificate()).value[2])
    root_kid = cose.key_id(chain.root_public)

    def root_signed_cert(**changes: Any) -> bytes:
        return cose.sign(chain.root, cbor2.dumps({**cert, **changes}), kid=root_kid)

    return {
        "ROOT_PUBLIC": chain.root_public,
        "GOOD": good,
        # The genuine payload signed by another key, under the certified key's kid.
        "WRONG_KEY": cose.sign(seeded_key("intruder"), body, kid=chain.release_kid),
        "REVOKED": chain.manifest(revocations=chain.revocations((chain.release_kid,), seq=2)),
        "UNCERTIFIED": chain.manifest(certificate=chain.certificate(by=chain.release)),
        # Validly signed, but naming a file that would shadow the boot part's slots.py.
        "BOOT_SHADOW": cose.sign(chain.release, cbor2.dumps(shadow), kid=chain.release_kid),
        # Root-signed, but for role "operator": such a key signs desired states, not releases.
        "OPERATOR_CERT": chain.manifest(certificate=root_signed_cert(role="operator")),
        # Root-signed, but its kid names another key (a revoked one could hide behind it).
        "CERT_KID_WRONG": chain.manifest(certificate=root_signed_cert(kid=bytes(8))),
        # A revocation list the release key made itself, to hide its own revocation.
        "FORGED_LIST": chain.manifest(revocations=chain.revocations(seq=9, by=chain.release)),
    }


def literal_block() -> str:
    lines = []
    for name, data in vectors().items():
        text = data.hex()
        chunks = [text[i : i + 88] for i in range(0, len(text), 88)]
        if len(chunks) == 1:
            lines.append(f'{name} = _h("{text}")')
        else:
            lines.append(f"{name} = _h(")
            lines.extend(f'    "{chunk}"' for chunk in chunks)
            lines.append(")")
    return "\n".join(lines)


def test_shared_vectors_are_what_the_host_makes() -> None:
    for name, data in vectors().items():
        assert getattr(shared, name) == data, f"{name}: run python -m tests.firmware.test_manifest"
    assert shared.NOW == NOW
    assert shared.DAY == DAY
    assert shared.FILES == APP_FILES


def test_the_board_and_the_host_refuse_with_the_same_reasons() -> None:
    for name in dir(board_errors):
        board = getattr(board_errors, name)
        if isinstance(board, type) and issubclass(board, board_errors.ReleaseRefused):
            host: type[fleet.errors.ReleaseRefused] = getattr(fleet.errors, name)
            assert host.reason == cast(Any, board).reason, name
            parents = {c.__name__ for c in board.__mro__} - {
                "SimpulError",
                "Exception",
                "BaseException",
                "object",
            }
            assert parents <= {c.__name__ for c in host.__mro__}, name


def _verdict_on_board(data: bytes, **state: Any) -> str:
    try:
        manifest.verify(
            data,
            shared.ROOT_PUBLIC,
            state.get("installed_seq", 0),
            state.get("hw", "esp32"),
            now=state.get("now"),
            revocations_seen=state.get("revocations_seen", 0),
            boot_version=state.get("boot_version"),
            free_bytes=state.get("free_bytes"),
        )
    except board_errors.ReleaseRefused as e:
        return str(e.reason)
    return "ok"


def _verdict_on_host(data: bytes, **state: Any) -> str:
    try:
        verify_manifest(
            data,
            shared.ROOT_PUBLIC,
            hw=state.get("hw", "esp32"),
            **{k: v for k, v in state.items() if k != "hw"},
        )
    except fleet.errors.ReleaseRefused as e:
        return e.reason
    return "ok"


@pytest.mark.parametrize(
    ("name", "state", "reason"),
    [
        ("GOOD", {}, "ok"),
        ("GOOD", {"installed_seq": 7}, "stale"),
        ("GOOD", {"hw": "esp32-s3"}, "hardware"),
        ("GOOD", {"now": NOW + 731 * DAY}, "expired"),
        ("GOOD", {"revocations_seen": 2}, "revocations"),
        ("GOOD", {"boot_version": 0}, "boot_version"),
        ("GOOD", {"free_bytes": 100}, "too_large"),
        ("WRONG_KEY", {}, "signature"),
        ("REVOKED", {}, "revoked"),
        ("UNCERTIFIED", {}, "certificate"),
        ("BOOT_SHADOW", {}, "malformed"),
        ("OPERATOR_CERT", {}, "certificate"),
        ("CERT_KID_WRONG", {}, "certificate"),
        ("FORGED_LIST", {}, "revocations"),
    ],
)
def test_board_and_host_agree(name: str, state: dict[str, Any], reason: str) -> None:
    data = getattr(shared, name)
    assert _verdict_on_board(data, **state) == reason
    assert _verdict_on_host(data, **state) == reason


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=671), st.integers(min_value=1, max_value=255))
def test_board_refuses_every_changed_byte_as_the_host_does(position: int, xor: int) -> None:
    data = bytearray(shared.GOOD)
    data[position % len(data)] ^= xor
    board = _verdict_on_board(bytes(data))
    assert board != "ok"
    assert _verdict_on_host(bytes(data)) != "ok"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_board_meets_hostile_bytes_with_a_refusal(data: bytes) -> None:
    assert _verdict_on_board(data) in {"malformed", "signature"}


def test_a_real_release_manifest_verifies_on_the_board(tmp_path: Any) -> None:
    from fleet import keys
    from fleet.release import build_release, decode_release

    now = NOW + DAY
    keys.init_fleet(tmp_path / "fleet", tmp_path / "root.key", "a passphrase of length", now=NOW)
    data, found = build_release(tmp_path / "fleet", version="3.1.4", now=now)
    release = decode_release(data)
    root = keys.root_public_key(tmp_path / "fleet")
    m = manifest.verify(release.manifest_bytes, root, 0, "esp32", now=now)
    assert (m.seq, m.version, m.total) == (1, "3.1.4", found.verified.manifest.total)
    for path, content in release.files.items():
        check = manifest.FileCheck(m, path)
        for i in range(0, len(content), 1024):  # block by block, as a download comes
            check.update(content[i : i + 1024])
        check.finish()


if __name__ == "__main__":
    sys.stdout.write(literal_block() + "\n")
