"""Hostile variations of OSCORE-protected requests: the OSCORE fuzz test
(``tests/gateway/test_oscore_fuzz.py``) and the ``gateway_oscore_fuzz`` benchmark share them.

They start from captured protected requests that the gateway has already accepted, so an
exact copy is a replay and nothing a mutant carries may be stored. Each mutant, with a fresh
message ID, is one of (its kind counted in :attr:`ProtectedMutations.kinds`):

* ``coap``: one to three CoAP-level mutations of the whole datagram (``tests/fuzz_udp.py``'s
  :func:`~tests.fuzz_udp.mutate_once`: bit flips, cuts, insertions, other codes and types,
  injected options, garbage payloads);
* ``option``: the OSCORE option changed: its flags, its Partial IV (random, huge, of a
  reserved length, with a leading zero, none), its kid (unknown, another enrolled board's,
  empty, too long, none), a kid context, reserved flag bits, a garbage value, or the option
  removed (plain CoAP) or repeated;
* ``ciphertext``: a bit of the ciphertext or of its tag flipped, the payload cut (below the
  tag's 8 bytes too), extended, replaced or removed;
* ``outer``: another outer code, type or token, or outer options no board sends (Uri-Path,
  Observe, Echo, Block1/2, Size1, Content-Format, Proxy-Uri, an unknown critical option);
* ``replay``: a captured request as it was;
* ``wrong_key`` (given ``wrong_key``): a fresh protection under a key the gateway does not
  have, with an enrolled board's kid;
* ``forged`` (given ``forger``): a request an enrolled board protects properly, whose content
  is not its own: a pack naming another board, or inner options and payloads no board sends.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from gateway.codec import coap
from tests.fuzz_udp import mutate_once
from tests.oscore_requests import OSCORE_OPTION, POST, BoardSender, readings_options

MAX_DATAGRAM = 1400
#: Outer options a board never sends, with values made by the mutator.
_OUTER = (11, 6, 252, 27, 23, 60, 12, 35, 9999)


@dataclass(frozen=True, slots=True)
class Forger:
    """An enrolled board's sender, and a readings pack that names another board."""

    sender: BoardSender
    foreign_pack: bytes


class ProtectedMutations:
    """A reproducible, endless stream of mutants of ``captured`` protected requests."""

    def __init__(
        self,
        captured: Sequence[bytes],
        *,
        seed: int,
        enrolled_kids: Sequence[bytes] = (),
        wrong_key: BoardSender | None = None,
        forger: Forger | None = None,
    ) -> None:
        self.captured = [coap.decode(datagram) for datagram in captured]
        self.raw = list(captured)
        self.rng = random.Random(seed)
        self.enrolled_kids = list(enrolled_kids)
        self.wrong_key = wrong_key
        self.forger = forger
        self.kinds: Counter[str] = Counter()
        kinds = {"coap": 30, "option": 25, "ciphertext": 15, "outer": 10, "replay": 5}
        if wrong_key is not None:
            kinds["wrong_key"] = 5
        if forger is not None:
            kinds["forged"] = 10
        self._kinds, self._weights = list(kinds), list(kinds.values())

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        rng = self.rng
        kind = rng.choices(self._kinds, self._weights)[0]
        self.kinds[kind] += 1
        at = rng.randrange(len(self.raw))
        if kind == "coap":
            data = bytearray(self.raw[at])
            for _ in range(rng.choice((1, 1, 2, 3))):
                mutate_once(data, rng)
        else:
            message = self.captured[at]
            if kind == "option":
                message = self._option(message)
            elif kind == "ciphertext":
                message = replace(message, payload=self._ciphertext(message.payload))
            elif kind == "outer":
                message = self._outer(message)
            elif kind == "wrong_key":
                assert self.wrong_key is not None
                fresh = self.wrong_key.protect(POST, readings_options(), message.payload[:40])
                message = coap.decode(fresh.datagram)
            elif kind == "forged":
                message = coap.decode(self._forged())
            data = bytearray(coap.encode(message))
        if len(data) >= 4:
            data[2:4] = rng.randbytes(2)  # a fresh message ID: no deduplication
        return bytes(data[:MAX_DATAGRAM])

    def _option(self, message: coap.Datagram) -> coap.Datagram:
        rng = self.rng
        value = message.values(OSCORE_OPTION)[0] if message.values(OSCORE_OPTION) else b"\x08"
        flags = value[0] if value else 0
        n = flags & 0x07
        piv, kid = value[1 : 1 + n], value[1 + n :] if flags & 0x08 else b""
        choice = rng.randrange(12)
        if choice == 0:  # any flags byte, the rest as it was
            value = bytes([rng.randrange(256)]) + value[1:]
        elif choice == 1:  # a random Partial IV: fails the MAC, never a fresh sequence number
            piv = rng.randbytes(rng.randint(1, 5))
            value = bytes([0x08 | len(piv)]) + piv + kid
        elif choice == 2:  # the largest Partial IV there is
            value = bytes([0x08 | 5]) + b"\xff" * 5 + kid
        elif choice == 3:  # a Partial IV of a reserved length (6 or 7 bytes)
            length = rng.choice((6, 7))
            value = bytes([0x08 | length]) + rng.randbytes(length) + kid
        elif choice == 4:  # the same Partial IV with a leading zero, or none
            piv = b"\0" + piv if rng.random() < 0.5 else b""
            value = bytes([0x08 | min(len(piv), 7)]) + piv + kid
        elif choice == 5:  # another kid: unknown, another board's, empty or too long
            kid = rng.choice(
                [
                    rng.randbytes(rng.randint(1, 7)),
                    rng.choice(self.enrolled_kids) if self.enrolled_kids else b"\x99",
                    b"",
                    rng.randbytes(rng.randint(8, 40)),
                ]
            )
            value = bytes([0x08 | len(piv)]) + piv + kid
        elif choice == 6:  # no kid at all
            value = bytes([len(piv)]) + piv
        elif choice == 7:  # a kid context
            context = rng.randbytes(rng.randint(0, 20))
            value = bytes([0x18 | len(piv)]) + piv + bytes([len(context)]) + context + kid
        elif choice == 8:  # reserved flag bits
            value = bytes([flags | rng.choice((0x20, 0x40, 0x80, 0xE0))]) + value[1:]
        elif choice == 9:  # a garbage value of any length
            value = rng.randbytes(rng.randrange(0, 256))
        elif choice == 10:  # the OSCORE option removed: plain CoAP
            return replace(message, options=_without(message.options, OSCORE_OPTION))
        else:  # the OSCORE option repeated
            extra = coap.Option(OSCORE_OPTION, rng.choice((value, rng.randbytes(4))))
            return replace(message, options=(*message.options, extra))
        options = (*_without(message.options, OSCORE_OPTION), coap.Option(OSCORE_OPTION, value))
        return replace(message, options=options)

    def _ciphertext(self, payload: bytes) -> bytes:
        rng = self.rng
        data = bytearray(payload)
        choice = rng.randrange(6)
        if choice in (0, 1) and data:  # a bit of the ciphertext, or of its tag (the last 8)
            at = rng.randrange(max(len(data) - 8, 1)) if choice == 0 else len(data) - 1
            at = max(at - rng.randrange(8), 0) if choice == 1 else at
            data[at] ^= 1 << rng.randrange(8)
        elif choice == 2:  # cut, below the tag's length too
            del data[rng.randrange(len(data) + 1) :]
        elif choice == 3:  # extended
            data += rng.randbytes(rng.randint(1, 64))
        elif choice == 4:  # replaced
            data = bytearray(rng.randbytes(rng.randrange(0, len(data) + 16)))
        else:  # removed
            data = bytearray()
        return bytes(data)

    def _outer(self, message: coap.Datagram) -> coap.Datagram:
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:  # GET, PUT, DELETE, FETCH, iPATCH or any code
            code = rng.choice((0x01, 0x03, 0x04, 0x05, 0x07, rng.randrange(1, 256)))
            if code >> 5 in (1, 6, 7):
                code = 0x05  # a reserved class never leaves the codec: FETCH instead
            return replace(message, code=code)
        if choice == 1:  # NON, or a token of another length
            if rng.random() < 0.5:
                return replace(message, mtype=coap.NON)
            return replace(message, token=rng.randbytes(rng.randrange(0, 9)))
        number = rng.choice(_OUTER)
        value = rng.randbytes(rng.randrange(0, 41))
        if number == 11:
            value = b"readings"
        return replace(message, options=(*message.options, coap.Option(number, value)))

    def _forged(self) -> bytes:
        rng = self.rng
        assert self.forger is not None
        sender, pack = self.forger.sender, self.forger.foreign_pack
        choice = rng.randrange(5)
        options = list(readings_options())
        payload = pack
        code = POST
        if choice == 1:  # another board's pack, mutated
            data = bytearray(pack)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            payload = bytes(data)
        elif choice == 2:  # garbage in the readings' place
            payload = rng.randbytes(rng.randrange(0, 200))
        elif choice == 3:  # another resource, format or method inside
            path = rng.choice((b"health", b"gateway", b"ota", b".well-known", b"\xff\xfe"))
            options = [coap.Option(11, path), coap.Option(12, bytes([rng.randrange(256)]))]
            code = rng.choice((0x01, 0x02, 0x03, 0x04))
        elif choice == 4:  # inner options no board sends (Observe, Block1, unknown critical)
            number = rng.choice((6, 27, 9999, 252))
            options.append(coap.Option(number, rng.randbytes(rng.randrange(0, 9))))
        return sender.protect(code, options, payload).datagram


def _without(options: tuple[coap.Option, ...], number: int) -> tuple[coap.Option, ...]:
    return tuple(o for o in options if o.number != number)
