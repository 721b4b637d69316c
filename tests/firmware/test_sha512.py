"""sha512.py cross-checked against CPython's hashlib (CPython only; the VM runs
mpy/mpy_test_sha512.py)."""

import hashlib

import mpy_test_sha512
import sha512
from hypothesis import given, settings
from hypothesis import strategies as st


def test_every_length_from_0_to_300_matches_hashlib() -> None:
    data = bytes((i * 37 + 11) % 256 for i in range(300))
    for n in range(301):
        assert sha512.digest(data[:n]) == hashlib.sha512(data[:n]).digest(), n


def test_multi_block_messages_match_hashlib() -> None:
    for n in (1023, 1024, 4096 + 17, 128 * 1024):
        data = bytes((i * 131 + n) % 256 for i in range(n))
        assert sha512.digest(data) == hashlib.sha512(data).digest(), n


def test_a_million_a_as_in_fips_examples() -> None:
    h = sha512.sha512()
    chunk = b"a" * 1000
    for _ in range(1000):
        h.update(chunk)
    assert h.digest().hex() == (
        "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
        "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700), st.lists(st.integers(min_value=0, max_value=700), max_size=8))
def test_any_split_into_updates_matches_hashlib(data: bytes, cuts: list[int]) -> None:
    h = sha512.sha512()
    reference = hashlib.sha512()
    start = 0
    for cut in sorted(min(c, len(data)) for c in cuts):
        h.update(data[start:cut])
        reference.update(data[start:cut])
        assert h.digest() == reference.digest()  # digest() midway leaves the hash going
        start = cut
    h.update(data[start:])
    assert h.digest() == hashlib.sha512(data).digest()


def test_the_vm_modules_boundary_digests_are_hashlibs() -> None:
    for n, prefix in mpy_test_sha512.BOUNDARIES:
        assert hashlib.sha512(mpy_test_sha512._data(n)).hexdigest()[:64] == prefix, n
    for message, expected in mpy_test_sha512.EXAMPLES:
        assert hashlib.sha512(message).hexdigest() == expected
