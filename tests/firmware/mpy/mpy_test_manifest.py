# ruff: noqa: PT017, UP031 - MicroPython has no pytest or contextlib; %-format is its idiom
"""manifest.py against manifests made by the host's release code, and each attack on a
release that the board must refuse; runs on CPython and MicroPython.
tests/firmware/test_manifest.py remakes the literals below with fleet/manifest.py and
tests/release/chain.py (fixed seeds, fixed time) to prove they are what they say.
"""

import binascii

import cbor
import manifest
from errors import (
    BadCertificate,
    BadManifest,
    BadManifestSignature,
    BadRevocations,
    BootTooOld,
    CertificateExpired,
    FileMismatch,
    FileTooLarge,
    KeyRevoked,
    ReleaseRefused,
    StaleRelease,
    TooLarge,
    UnlistedFile,
    WrongHardware,
)


def _h(s: str) -> bytes:
    return binascii.unhexlify(s)


NOW = 1750000000  # when the chain's keys were certified; the certificate runs 730 days
DAY = 86400
# The release's three files (stand-ins for compiled .mpy files).
FILES = {
    "app.mpy": b"M\x06\x00\x1f" + bytes(range(256)) * 4,
    "senml.mpy": b"M\x06\x00\x1f" + b"senml" * 100,
    "cbor.mpy": b"M\x06\x00\x1f" + b"\x00\xff" * 333,
}

# ROOT_PUBLIC: the root key a board holds. GOOD: release 1.2.3, seq 7, for "esp32", boot
# part 1 or later, FILES, signed by the release key, with its certificate by the root
# (valid NOW to NOW + 730 days) and revocation list 1 (empty). WRONG_KEY: GOOD's payload
# signed by another key under the release key's kid. REVOKED: as GOOD with revocation
# list 2, which revokes the release key. UNCERTIFIED: as GOOD with a certificate the
# release key signed itself. BOOT_SHADOW: validly signed, listing a "slots.mpy".
# OPERATOR_CERT, CERT_KID_WRONG: as GOOD with a root-signed certificate for role
# "operator", or whose kid is not its key's. FORGED_LIST: as GOOD with a revocation list
# (seq 9) the release key signed itself.
ROOT_PUBLIC = _h("35e084728da9e93f4b8551733ef50611f24171cc45b5ed49e3ce34e3a8f0abe2")
GOOD = _h(
    "d2844da20127044818e4b36fcf2842a1a059024aac6474797065686d616e6966657374617601637365710767"
    "76657273696f6e65312e322e3362687765657370333268626f6f745f6d696e01636d70790667637265617465"
    "641a685033006566696c65738383676170702e6d707958207086ed3cc9033b9f67b357972d00862183988e8a"
    "d5b55d54ad413fbfe618aede190404836863626f722e6d70795820960ebf695b070927a30652a737651b12aa"
    "3c649f92e27e253343ebb732f63e5f19029e836973656e6d6c2e6d7079582038c198b9775f4eb0f1a71733fd"
    "e44d68dbff9cf9d9e28fc2902c634ad7c703ae1901f865746f74616c19089a646365727458cad2844da20127"
    "044829ff00ea2733970fa05875a8647479706564636572746176016673657269616c0164726f6c656772656c"
    "65617365636b69644818e4b36fcf2842a1636b65795820f5fcced868c05585a8635caf1ee4518bbc693ea7c6"
    "e5692473b965c59dc1babc6a6e6f745f6265666f72651a684ee180696e6f745f61667465721a6c1148805840"
    "c49d3c0d7c6b8471c936a4e6b141c733667322f7f5c1201cbb7f35da41f281768fda30beb882c86a84bf49b7"
    "dde14ba723ab0716649ff7066e1587842feb4f016b7265766f636174696f6e735884d2844da20127044829ff"
    "00ea2733970fa0582fa564747970656b7265766f636174696f6e736176016373657101677265766f6b656480"
    "666973737565641a684ee180584025e4ad0b483708c2553e6c95bd165394888d8480ac0607e491a8a06f09d8"
    "2c044ae9ef777f1efc393f0effa0b8197c8017a3dfd002880422ec0d6427cc27ad085840af843e2e7c97ccd1"
    "d51c06d37a68d03de74bca1ee1be56b912730cb8ae1af073f6e73938c8681919716f5d90e1f8ffb106d837ca"
    "0a0292ef0e69684f88c73108"
)
WRONG_KEY = _h(
    "d2844da20127044818e4b36fcf2842a1a059024aac6474797065686d616e6966657374617601637365710767"
    "76657273696f6e65312e322e3362687765657370333268626f6f745f6d696e01636d70790667637265617465"
    "641a685033006566696c65738383676170702e6d707958207086ed3cc9033b9f67b357972d00862183988e8a"
    "d5b55d54ad413fbfe618aede190404836863626f722e6d70795820960ebf695b070927a30652a737651b12aa"
    "3c649f92e27e253343ebb732f63e5f19029e836973656e6d6c2e6d7079582038c198b9775f4eb0f1a71733fd"
    "e44d68dbff9cf9d9e28fc2902c634ad7c703ae1901f865746f74616c19089a646365727458cad2844da20127"
    "044829ff00ea2733970fa05875a8647479706564636572746176016673657269616c0164726f6c656772656c"
    "65617365636b69644818e4b36fcf2842a1636b65795820f5fcced868c05585a8635caf1ee4518bbc693ea7c6"
    "e5692473b965c59dc1babc6a6e6f745f6265666f72651a684ee180696e6f745f61667465721a6c1148805840"
    "c49d3c0d7c6b8471c936a4e6b141c733667322f7f5c1201cbb7f35da41f281768fda30beb882c86a84bf49b7"
    "dde14ba723ab0716649ff7066e1587842feb4f016b7265766f636174696f6e735884d2844da20127044829ff"
    "00ea2733970fa0582fa564747970656b7265766f636174696f6e736176016373657101677265766f6b656480"
    "666973737565641a684ee180584025e4ad0b483708c2553e6c95bd165394888d8480ac0607e491a8a06f09d8"
    "2c044ae9ef777f1efc393f0effa0b8197c8017a3dfd002880422ec0d6427cc27ad0858408b9168208456b417"
    "30ce3fd61fb2166add5de93fdb5debdf823a9fc9e70e8698c92c897624b7a4b3f341ad23b9b2d445c8405e99"
    "85b7ae4d850b26c091952b01"
)
REVOKED = _h(
    "d2844da20127044818e4b36fcf2842a1a0590253ac6474797065686d616e6966657374617601637365710767"
    "76657273696f6e65312e322e3362687765657370333268626f6f745f6d696e01636d70790667637265617465"
    "641a685033006566696c65738383676170702e6d707958207086ed3cc9033b9f67b357972d00862183988e8a"
    "d5b55d54ad413fbfe618aede190404836863626f722e6d70795820960ebf695b070927a30652a737651b12aa"
    "3c649f92e27e253343ebb732f63e5f19029e836973656e6d6c2e6d7079582038c198b9775f4eb0f1a71733fd"
    "e44d68dbff9cf9d9e28fc2902c634ad7c703ae1901f865746f74616c19089a646365727458cad2844da20127"
    "044829ff00ea2733970fa05875a8647479706564636572746176016673657269616c0164726f6c656772656c"
    "65617365636b69644818e4b36fcf2842a1636b65795820f5fcced868c05585a8635caf1ee4518bbc693ea7c6"
    "e5692473b965c59dc1babc6a6e6f745f6265666f72651a684ee180696e6f745f61667465721a6c1148805840"
    "c49d3c0d7c6b8471c936a4e6b141c733667322f7f5c1201cbb7f35da41f281768fda30beb882c86a84bf49b7"
    "dde14ba723ab0716649ff7066e1587842feb4f016b7265766f636174696f6e73588dd2844da20127044829ff"
    "00ea2733970fa05838a564747970656b7265766f636174696f6e736176016373657102677265766f6b656481"
    "4818e4b36fcf2842a1666973737565641a684ee18058406ecd244f196d42d95cbbf12d13de206dee99327135"
    "7a20ce9ff780336d995ec2d2e10d1ee592182626e35fcd86ba9a1967bb11beca97b4361b06140afe787c0f58"
    "406209218b69bdb0380acc1799365bb000a18bc0404477ba74ef4970034f4d564985c623a24faf5a6d5f5e48"
    "067d2d84c8ce8723ba627d7bb9fa3861fbd821b20c"
)
UNCERTIFIED = _h(
    "d2844da20127044818e4b36fcf2842a1a059024aac6474797065686d616e6966657374617601637365710767"
    "76657273696f6e65312e322e3362687765657370333268626f6f745f6d696e01636d70790667637265617465"
    "641a685033006566696c65738383676170702e6d707958207086ed3cc9033b9f67b357972d00862183988e8a"
    "d5b55d54ad413fbfe618aede190404836863626f722e6d70795820960ebf695b070927a30652a737651b12aa"
    "3c649f92e27e253343ebb732f63e5f19029e836973656e6d6c2e6d7079582038c198b9775f4eb0f1a71733fd"
    "e44d68dbff9cf9d9e28fc2902c634ad7c703ae1901f865746f74616c19089a646365727458cad2844da20127"
    "044818e4b36fcf2842a1a05875a8647479706564636572746176016673657269616c0164726f6c656772656c"
    "65617365636b69644818e4b36fcf2842a1636b65795820f5fcced868c05585a8635caf1ee4518bbc693ea7c6"
    "e5692473b965c59dc1babc6a6e6f745f6265666f72651a684ee180696e6f745f61667465721a6c1148805840"
    "14ffcb60cd254128307bc05f5563e7c41845ee0f070b00920610817281879cdb1df457e187ed9f2d6d8772cb"
    "64ec7ee7b7ed793988c5e37abd2f5f3f6dac14076b7265766f636174696f6e735884d2844da20127044829ff"
    "00ea2733970fa0582fa564747970656b7265766f636174696f6e736176016373657101677265766f6b656480"
    "666973737565641a684ee180584025e4ad0b483708c2553e6c95bd165394888d8480ac0607e491a8a06f09d8"
    "2c044ae9ef777f1efc393f0effa0b8197c8017a3dfd002880422ec0d6427cc27ad0858403f041d5c36af748d"
    "e09ba4c595dc81c4ef7e1f6ff3fa70c1b850f9800f6b78e6a9838242f76a61699fe9faf660e96e650e338150"
    "ec4958b8838a0d8554d9c007"
)
BOOT_SHADOW = _h(
    "d2844da20127044818e4b36fcf2842a1a0590278ac6474797065686d616e6966657374617601637365710767"
    "76657273696f6e65312e322e3362687765657370333268626f6f745f6d696e01636d70790667637265617465"
    "641a685033006566696c65738483676170702e6d707958207086ed3cc9033b9f67b357972d00862183988e8a"
    "d5b55d54ad413fbfe618aede190404836863626f722e6d70795820960ebf695b070927a30652a737651b12aa"
    "3c649f92e27e253343ebb732f63e5f19029e836973656e6d6c2e6d7079582038c198b9775f4eb0f1a71733fd"
    "e44d68dbff9cf9d9e28fc2902c634ad7c703ae1901f88369736c6f74732e6d707958202d711642b726b04401"
    "627ca9fbac32f5c8530fb1903cc4db02258717921a48810165746f74616c19089b646365727458cad2844da2"
    "0127044829ff00ea2733970fa05875a8647479706564636572746176016673657269616c0164726f6c656772"
    "656c65617365636b69644818e4b36fcf2842a1636b65795820f5fcced868c05585a8635caf1ee4518bbc693e"
    "a7c6e5692473b965c59dc1babc6a6e6f745f6265666f72651a684ee180696e6f745f61667465721a6c114880"
    "5840c49d3c0d7c6b8471c936a4e6b141c733667322f7f5c1201cbb7f35da41f281768fda30beb882c86a84bf"
    "49b7dde14ba723ab0716649ff7066e1587842feb4f016b7265766f636174696f6e735884d2844da201270448"
    "29ff00ea2733970fa0582fa564747970656b7265766f636174696f6e736176016373657101677265766f6b65"
    "6480666973737565641a684ee180584025e4ad0b483708c2553e6c95bd165394888d8480ac0607e491a8a06f"
    "09d82c044ae9ef777f1efc393f0effa0b8197c8017a3dfd002880422ec0d6427cc27ad08584020a1aff9bfd0"
    "b402113fa0fd066ba8f6ef4a9635885473a2b7a980a467b331476d0df7d65402b0af27dc0d68f04f6946a177"
    "26418fec97bdde799484cbaf9608"
)
OPERATOR_CERT = _h(
    "d2844da20127044818e4b36fcf2842a1a059024bac6474797065686d616e6966657374617601637365710767"
    "76657273696f6e65312e322e3362687765657370333268626f6f745f6d696e01636d70790667637265617465"
    "641a685033006566696c65738383676170702e6d707958207086ed3cc9033b9f67b357972d00862183988e8a"
    "d5b55d54ad413fbfe618aede190404836863626f722e6d70795820960ebf695b070927a30652a737651b12aa"
    "3c649f92e27e253343ebb732f63e5f19029e836973656e6d6c2e6d7079582038c198b9775f4eb0f1a71733fd"
    "e44d68dbff9cf9d9e28fc2902c634ad7c703ae1901f865746f74616c19089a646365727458cbd2844da20127"
    "044829ff00ea2733970fa05876a8647479706564636572746176016673657269616c0164726f6c65686f7065"
    "7261746f72636b69644818e4b36fcf2842a1636b65795820f5fcced868c05585a8635caf1ee4518bbc693ea7"
    "c6e5692473b965c59dc1babc6a6e6f745f6265666f72651a684ee180696e6f745f61667465721a6c11488058"
    "40470a8277487eec961eff376ded784b4fa261c884355def7464b16fe07eddc9433e213695ab694bea6e8720"
    "eb55a5081f314026c6cfcc011949bd0af193e4ce016b7265766f636174696f6e735884d2844da20127044829"
    "ff00ea2733970fa0582fa564747970656b7265766f636174696f6e736176016373657101677265766f6b6564"
    "80666973737565641a684ee180584025e4ad0b483708c2553e6c95bd165394888d8480ac0607e491a8a06f09"
    "d82c044ae9ef777f1efc393f0effa0b8197c8017a3dfd002880422ec0d6427cc27ad08584023e980e51e6744"
    "2d8adee81fbcc26ba6420516e32816c62c6e7a85281d76c8d4e9465479845993b28a05d81dfa1fccb0237906"
    "570bc6d208f739d1960bee3c08"
)
CERT_KID_WRONG = _h(
    "d2844da20127044818e4b36fcf2842a1a059024aac6474797065686d616e6966657374617601637365710767"
    "76657273696f6e65312e322e3362687765657370333268626f6f745f6d696e01636d70790667637265617465"
    "641a685033006566696c65738383676170702e6d707958207086ed3cc9033b9f67b357972d00862183988e8a"
    "d5b55d54ad413fbfe618aede190404836863626f722e6d70795820960ebf695b070927a30652a737651b12aa"
    "3c649f92e27e253343ebb732f63e5f19029e836973656e6d6c2e6d7079582038c198b9775f4eb0f1a71733fd"
    "e44d68dbff9cf9d9e28fc2902c634ad7c703ae1901f865746f74616c19089a646365727458cad2844da20127"
    "044829ff00ea2733970fa05875a8647479706564636572746176016673657269616c0164726f6c656772656c"
    "65617365636b6964480000000000000000636b65795820f5fcced868c05585a8635caf1ee4518bbc693ea7c6"
    "e5692473b965c59dc1babc6a6e6f745f6265666f72651a684ee180696e6f745f61667465721a6c1148805840"
    "664199a6814df70669a83879e4371cac14aa9f90f0957a88cd8bbe34f887cfd7678e5eba4143a60d6bf1e933"
    "bf0f12f24877ba082ff1bd30035b7a4808d74f0e6b7265766f636174696f6e735884d2844da20127044829ff"
    "00ea2733970fa0582fa564747970656b7265766f636174696f6e736176016373657101677265766f6b656480"
    "666973737565641a684ee180584025e4ad0b483708c2553e6c95bd165394888d8480ac0607e491a8a06f09d8"
    "2c044ae9ef777f1efc393f0effa0b8197c8017a3dfd002880422ec0d6427cc27ad0858402d069646e7858cb8"
    "bfe75aa4c08814e54b54558f45ff6d1008ec910a32cc06ccaef5a65621df7d9f2c9d5556884a4e10fa056530"
    "d21b6ad934d6ed10ffe5370a"
)
FORGED_LIST = _h(
    "d2844da20127044818e4b36fcf2842a1a059024aac6474797065686d616e6966657374617601637365710767"
    "76657273696f6e65312e322e3362687765657370333268626f6f745f6d696e01636d70790667637265617465"
    "641a685033006566696c65738383676170702e6d707958207086ed3cc9033b9f67b357972d00862183988e8a"
    "d5b55d54ad413fbfe618aede190404836863626f722e6d70795820960ebf695b070927a30652a737651b12aa"
    "3c649f92e27e253343ebb732f63e5f19029e836973656e6d6c2e6d7079582038c198b9775f4eb0f1a71733fd"
    "e44d68dbff9cf9d9e28fc2902c634ad7c703ae1901f865746f74616c19089a646365727458cad2844da20127"
    "044829ff00ea2733970fa05875a8647479706564636572746176016673657269616c0164726f6c656772656c"
    "65617365636b69644818e4b36fcf2842a1636b65795820f5fcced868c05585a8635caf1ee4518bbc693ea7c6"
    "e5692473b965c59dc1babc6a6e6f745f6265666f72651a684ee180696e6f745f61667465721a6c1148805840"
    "c49d3c0d7c6b8471c936a4e6b141c733667322f7f5c1201cbb7f35da41f281768fda30beb882c86a84bf49b7"
    "dde14ba723ab0716649ff7066e1587842feb4f016b7265766f636174696f6e735884d2844da20127044818e4"
    "b36fcf2842a1a0582fa564747970656b7265766f636174696f6e736176016373657109677265766f6b656480"
    "666973737565641a684ee1805840270a91b5f30255ec0ed6e8631413d1707b0df4988e4b663d542ac0bd7bee"
    "e21af4ebe1e5d33e9b07552c256c6bc8f4499b36049cc1704dccc6e2613e3df41a0d584001bc0509dc3a3a2b"
    "37af5712a8bc07a3748c50437dcc47c05538a0cc129e71ce29cf81ff3b95c284e75a5d01b8e87b3669252558"
    "c279798567dac3b6541e880e"
)

KID = _h("18e4b36fcf2842a1")
TOTAL = 1028 + 504 + 670


def _verify(data: bytes, **state: object) -> manifest.Manifest:
    m: manifest.Manifest = manifest.verify(
        data,
        ROOT_PUBLIC,
        state.get("installed_seq", 6),
        state.get("hw", "esp32"),
        now=state.get("now", NOW + DAY),
        revocations_seen=state.get("revocations_seen", 1),
        boot_version=state.get("boot_version", 1),
        free_bytes=state.get("free_bytes", 100000),
    )
    return m


def _refused(data: bytes, error: type, reason: str, **state: object) -> ReleaseRefused:
    """``data`` is refused with ``error`` (exactly) for ``reason``; it is left unchanged."""
    before = bytes(data)
    try:
        got = _verify(data, **state)
    except ReleaseRefused as e:
        assert type(e) is error, "refused with %s (%s), not %s" % (type(e).__name__, e, error)
        assert reason in str(e), "refused for %r, not %r" % (str(e), reason)
        assert data == before
        return e
    raise AssertionError("accepted: seq %d" % got.seq)


def _parts() -> "list[object]":
    parts: list[object] = cbor.loads(GOOD).value
    return parts


def _flip(data: bytes, at: int, bit: int = 1) -> bytes:
    b = bytearray(data)
    b[at] ^= bit
    return bytes(b)


def test_a_good_manifest_says_what_to_install() -> None:
    m = _verify(GOOD)
    assert (m.seq, m.version, m.hw, m.boot_min, m.mpy) == (7, "1.2.3", "esp32", 1, 6)
    assert m.created == NOW + DAY
    assert m.total == TOTAL
    assert [f[0] for f in m.files] == ["app.mpy", "cbor.mpy", "senml.mpy"]
    assert [f[2] for f in m.files] == [1028, 670, 504]
    assert m.kid == KID
    assert m.revocations_seq == 1
    # A board without time yet skips validity; the rest holds.
    assert _verify(GOOD, now=None).seq == 7


def test_each_file_checks_against_its_entry() -> None:
    m = _verify(GOOD)
    for path in FILES:
        check = manifest.FileCheck(m, path)
        data = FILES[path]
        for i in range(0, len(data), 100):
            check.update(data[i : i + 100])
        check.finish()


def test_verify_steps_yields_none_then_the_manifest() -> None:
    items = list(manifest.verify_steps(GOOD, ROOT_PUBLIC, 6, "esp32", NOW + DAY, 1, 1, 100000))
    assert len(items) > 30, len(items)  # three signatures, each in slices
    assert items[:-1] == [None] * (len(items) - 1)
    assert items[-1].seq == 7


# The attacks, each its own test.


def test_unsigned_manifest_is_refused() -> None:
    protected, _, payload, _ = _parts()
    assert isinstance(payload, bytes)
    _refused(payload, BadManifestSignature, "not signed: untagged")
    no_signature = cbor.dumps(cbor.Tag(18, [protected, {}, payload, b""]))
    _refused(no_signature, BadManifestSignature, "0 bytes, not 64")
    zeros = cbor.dumps(cbor.Tag(18, [protected, {}, payload, bytes(64)]))
    _refused(zeros, BadManifestSignature, "not signed by the certified release key")


def test_manifest_signed_by_a_wrong_key_is_refused() -> None:
    _refused(WRONG_KEY, BadManifestSignature, "signature does not match")


def test_revoked_release_key_is_refused() -> None:
    e = _refused(REVOKED, KeyRevoked, "release key 18e4b36fcf2842a1 is revoked (revocation list 2)")
    assert e.reason == "revoked"


def test_release_key_not_certified_by_the_root_is_refused() -> None:
    _refused(UNCERTIFIED, BadCertificate, "certificate: not signed by the root key")


def test_expired_certificate_is_refused() -> None:
    e = _refused(GOOD, CertificateExpired, "not at", now=NOW + 731 * DAY)
    assert e.reason == "expired"
    _refused(GOOD, CertificateExpired, "not at", now=NOW - 1)


def test_bit_flipped_manifest_is_refused() -> None:
    payload = _parts()[2]
    assert isinstance(payload, bytes)
    at = GOOD.index(cbor.loads(payload)["files"][0][1]) + 5  # inside a file's SHA-256
    for bit in (0x01, 0x80):
        _refused(_flip(GOOD, at, bit), BadManifestSignature, "signature does not match")
    # In the protected header, the payload's framing, the signature: refused all the same.
    for at in (5, 20, len(GOOD) - 1):
        try:
            _verify(_flip(GOOD, at))
        except ReleaseRefused:
            continue
        raise AssertionError("accepted a flip at %d" % at)


def test_bit_flipped_file_is_refused() -> None:
    m = _verify(GOOD)
    check = manifest.FileCheck(m, "cbor.mpy")
    check.update(_flip(FILES["cbor.mpy"], 100, 0x10))
    try:
        check.finish()
    except FileMismatch as e:
        assert "SHA-256" in str(e), str(e)
        return
    raise AssertionError("a flipped file passed")


def test_replayed_older_or_equal_sequence_is_refused() -> None:
    e = _refused(GOOD, StaleRelease, "seq 7 is not above the installed seq 7", installed_seq=7)
    assert e.reason == "stale"
    _refused(GOOD, StaleRelease, "not above the installed seq 8", installed_seq=8)


def test_wrong_hardware_class_is_refused() -> None:
    _refused(GOOD, WrongHardware, "for hardware 'esp32', not 'esp32-s3'", hw="esp32-s3")


def test_file_larger_than_declared_is_refused() -> None:
    m = _verify(GOOD)
    check = manifest.FileCheck(m, "senml.mpy")
    check.update(FILES["senml.mpy"])
    try:
        check.update(b"\x00")  # endless data: the first byte past the size stops it
    except FileTooLarge as e:
        assert "more than the 504 bytes declared" in str(e), str(e)
        assert check.received == 504
        return
    raise AssertionError("a byte past the declared size was taken")


def test_file_not_in_the_manifest_is_refused() -> None:
    m = _verify(GOOD)
    for path in ("boot.mpy", "evil.mpy", "app.py"):
        try:
            manifest.FileCheck(m, path)
        except UnlistedFile as e:
            assert path in str(e), str(e)
            continue
        raise AssertionError("%s is not in the manifest" % path)


def test_total_over_the_free_space_is_refused() -> None:
    _verify(GOOD, free_bytes=TOTAL)
    e = _refused(
        GOOD, TooLarge, "needs %d bytes; %d are free" % (TOTAL, TOTAL - 1), free_bytes=TOTAL - 1
    )
    assert e.reason == "too_large"


# More refusals.


def test_an_older_revocation_list_than_one_seen_is_refused() -> None:
    _refused(GOOD, BadRevocations, "revocation list 1 is older than list 2", revocations_seen=2)


def test_a_newer_boot_part_needed_is_refused() -> None:
    _refused(GOOD, BootTooOld, "needs boot part version 1; this one is 0", boot_version=0)


def test_a_certificate_for_another_role_is_refused() -> None:
    _refused(OPERATOR_CERT, BadCertificate, "for role 'operator', not 'release'")


def test_a_certificate_whose_kid_is_not_its_keys_is_refused() -> None:
    _refused(CERT_KID_WRONG, BadCertificate, "kid is not the key's")


def test_a_revocation_list_not_signed_by_the_root_is_refused() -> None:
    _refused(FORGED_LIST, BadRevocations, "revocation list: not signed by the root key")


def test_a_file_shadowing_the_boot_part_is_refused() -> None:
    _refused(BOOT_SHADOW, BadManifest, "'slots.mpy' is not an app file's plain name")


def test_a_short_file_is_refused() -> None:
    check = manifest.FileCheck(_verify(GOOD), "app.mpy")
    check.update(FILES["app.mpy"][:-1])
    try:
        check.finish()
    except FileMismatch as e:
        assert "1027 of 1028 bytes" in str(e), str(e)
        return
    raise AssertionError("a short file passed")


def test_malformed_manifests_are_refused() -> None:
    _refused(b"\x00" * 8193, BadManifest, "exceeds 8192")
    _refused(b"", BadManifestSignature, "not signed")
    _refused(GOOD + b"\x00", BadManifestSignature, "trailing")
    protected, _, _, signature = _parts()
    for body, reason in (
        ([1, 2], "not a version 1 'manifest' map"),
        ({"type": "cert", "v": 1}, "not a version 1 'manifest' map"),
        ({"type": "manifest", "v": 2}, "not a version 1 'manifest' map"),
        ({"type": "manifest", "v": 1, "extra": 1}, "fields other than seq, version"),
        (
            {
                "type": "manifest",
                "v": 1,
                "seq": 1,
                "version": "1.0.0",
                "hw": "esp32",
                "boot_min": 1,
                "mpy": 6,
                "created": 0,
                "files": [],
                "total": 0,
                "cert": b"",
                "extra": b"",
            },
            "lacks revocations",
        ),
    ):
        data = cbor.dumps(cbor.Tag(18, [protected, {}, cbor.dumps(body), signature]))
        _refused(data, BadManifest, reason)


def test_every_refusal_is_a_release_refused_with_a_reason() -> None:
    reasons = []
    for cls in (
        BadManifest, BadCertificate, CertificateExpired, KeyRevoked, BadRevocations,
        BadManifestSignature, StaleRelease, WrongHardware, BootTooOld, TooLarge,
        UnlistedFile, FileTooLarge, FileMismatch,
    ):  # fmt: skip
        assert issubclass(cls, ReleaseRefused), cls
        reasons.append(cls.reason)
    assert len(set(reasons)) == len(reasons), reasons


def test_only_plain_names_of_app_files_are_accepted() -> None:
    for name in ("app.mpy", "senml.mpy", "bme280.mpy", "a_b-c.mpy", "x" * 48):
        assert manifest._plain_name(name), name
    bad: tuple[object, ...] = (
        "", "x" * 49, "../app.mpy", "lib/app.mpy", "/app.mpy", ".hidden", "-x", "a..b",
        "boot.mpy", "slots.py", "flashfs.mpy", "main.mpy", "Slots.mpy", "BOOT.MPY", "caf\u00e9.mpy",
        "a b.mpy", "a\\b.mpy", 7, None,
    )  # fmt: skip
    for other in bad:
        assert not manifest._plain_name(other), other
