# ruff: noqa: UP031 - MicroPython has no pytest; %-format is its idiom
"""sha512.py against FIPS 180-4's examples and block-boundary digests; runs on CPython and
MicroPython (tests/firmware/test_sha512.py also checks it against hashlib on CPython)."""

import binascii
import gc

import sha512

# FIPS 180-4 / NIST CSRC examples for SHA-512.
EXAMPLES = [
    (
        b"",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
    (
        b"abc",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    ),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
        b"klmnopqrlmnopqrsmnopqrstnopqrstu",
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
    ),
]

# SHA-512 of _data(n) around the padding's boundaries (the length field needs a second
# block from 112 bytes on); made with CPython's hashlib, checked against it in
# tests/firmware/test_sha512.py.
BOUNDARIES = [
    (111, "a1a111449b198d9b1f538bad7f3fc1022b3a5b1a5e90a0bc860de8512746cbc3"),
    (112, "c5fbd731d19d2ae1180f001be72c2c1aaba1d7b094b3748880e24593b8e117a7"),
    (113, "61b2e77db697dfe5571fff3ed06bd60c41e1e7b7c08a80de01cb16526d9a9a52"),
    (127, "eab89674feaa34e27aebeeff3c0a4d70070bb872d5e9f186cf1dbbdee517b6e3"),
    (128, "1dffd5e3adb71d45d2245939665521ae001a317a03720a45732ba1900ca3b835"),
    (129, "1d9da57fbbdab09afb3506ab2d223d06109d65c1c8ad197f50138f714bc4c3f2"),
    (239, "cb4c7fd522756d5781ad3a4f590a1d862906b960e7720136cb3fb36b563caa1e"),
    (240, "6c48466c9f6c07e4ab762c696b7eeb35cfe236fca73683e5fab873ac3489b4d2"),
    (255, "e9746a5516961da1fdc8e6c59350cd147b7d80c120cc7ed621399faeb2462c28"),
    (256, "7ff1cd1e9773a4b7ba1f40e642db0d879bd5f6cc151a7d3401a0bc7778b8270c"),
    (257, "9fc68cce815c180c9188fad684397a7e9b423b3dadc3a6d3db74538eaec0c633"),
]


def _data(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def _hex(b: bytes) -> str:
    return binascii.hexlify(b).decode()


def test_fips_examples() -> None:
    for message, expected in EXAMPLES:
        assert _hex(sha512.digest(message)) == expected, message
        assert _hex(sha512.sha512(message).digest()) == expected, message


def test_padding_boundaries() -> None:
    for n, expected in BOUNDARIES:
        got = _hex(sha512.digest(_data(n)))
        assert len(got) == 128, got
        assert got[:64] == expected, "%d bytes: %s" % (n, got)


def test_update_in_pieces_equals_one_call() -> None:
    data = _data(300)
    whole = sha512.digest(data)
    for step in (1, 7, 64, 111, 127, 128, 129, 200):
        h = sha512.sha512()
        for i in range(0, len(data), step):
            h.update(data[i : i + step])
        assert h.digest() == whole, "pieces of %d" % step


def test_update_takes_bytearray_and_memoryview() -> None:
    data = _data(200)
    h = sha512.sha512(bytearray(data[:50]))
    h.update(memoryview(data)[50:200])
    assert h.digest() == sha512.digest(data)


def test_digest_does_not_end_the_hash() -> None:
    h = sha512.sha512(b"ab")
    first = h.digest()
    assert h.digest() == first
    h.update(b"c")
    assert _hex(h.digest()) == EXAMPLES[1][1]


def test_attributes_as_hashlib() -> None:
    h = sha512.sha512()
    assert h.digest_size == 64
    assert h.block_size == 128
    assert len(h.digest()) == 64


def test_a_block_allocates_almost_nothing_on_micropython() -> None:
    # On the MicroPython VM a collection runs only between calls from JS, so within this
    # test gc.mem_alloc() only grows: its growth is what hashing allocated. A word-at-a-time
    # SHA-512 allocates ~125 KB per block there. CPython has no mem_alloc: nothing to check.
    if not hasattr(gc, "mem_alloc"):
        return
    h = sha512.sha512()
    data = _data(8 * 128)
    h.update(data[:128])
    before = gc.mem_alloc()
    h.update(data)
    allocated = gc.mem_alloc() - before
    assert allocated <= 8 * 256, "%d bytes allocated for 8 blocks" % allocated
