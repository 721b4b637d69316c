"""Confirmable CoAP requests over the board's datagram link (RFC 7252 §4).

One request at a time, as a sensor board needs: a fresh token and message ID per request,
retransmission with exponential back-off from a randomised ACK_TIMEOUT, piggybacked and
separate responses (an empty ACK first, then a CON response that this client ACKs), and RST.

    client = Client(board, board.udp("192.168.4.1", 5683))
    response = await client.request(coap.POST, "/readings", payload, coap.SENML_CBOR)

With ``security`` (an ``oscore.Context``, from the board's ``/oscore.json``) every request
goes out protected (RFC 8613) and ``request`` returns the verified inner response. A
response in clear is the gateway refusing to verify the board (unknown, wrong key): nothing
vouches for its code, so it raises ``CoapRefused`` (the app backs off and keeps its
readings) rather than being acted on. A protected 4.01 with an Echo option (the gateway
recovering its replay window, RFC 8613 Appendix B.1.2) is answered once: the same request
again with that Echo inside, under a new sequence number.
"""

import coap
from errors import CoapFormatError, CoapRefused, CoapTimeout

ACK_TIMEOUT_MS = 2000
ACK_RANDOM_FACTOR_PERCENT = 150
MAX_RETRANSMIT = 4
# How long to wait for a separate response after the gateway's empty ACK.
SEPARATE_TIMEOUT_MS = 20000


class Client:
    def __init__(
        self,
        board,
        link,
        ack_timeout_ms=ACK_TIMEOUT_MS,
        max_retransmit=MAX_RETRANSMIT,
        security=None,
    ):
        self._board = board
        # Replaced by the app when the gateway hands over a new key (``oscorekeys.install``).
        self.security = security
        self._link = link
        self._ack_timeout_ms = ack_timeout_ms
        self._max_retransmit = max_retransmit
        self._mid = int.from_bytes(board.urandom(2), "big")
        # The last separate response we ACKed, to ACK its retransmissions again.
        self._acked_mid = None
        self.retransmissions = 0

    def _next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def _initial_timeout(self):
        # ACK_TIMEOUT * random(1, ACK_RANDOM_FACTOR), in integers (no float on the hot path).
        spread = self._ack_timeout_ms * (ACK_RANDOM_FACTOR_PERCENT - 100) // 100
        r = int.from_bytes(self._board.urandom(2), "big")
        return self._ack_timeout_ms + spread * r // 0xFFFF

    async def request(self, code, path, payload=b"", content_format=None, query=None, options=None):
        """Send a CON request; return the response Message (any response code). ``options``:
        more (number, value) pairs, e.g. Block2 or Echo.

        Raises CoapTimeout when every retransmission went unanswered, CoapRefused on RST (or,
        with OSCORE, on a response in clear), OscoreError on one that does not verify.
        """
        opts = coap.uri_options(path, query)
        if content_format is not None:
            opts.append((coap.CONTENT_FORMAT, coap.uint_option(content_format)))
        if options:
            opts.extend(options)
        security = self.security
        if security is None:
            return await self._exchange(code, opts, payload, path)
        echoed = False
        while True:
            outer_code, outer_opts, body, piv = security.protect(code, opts, payload)
            response = await self._exchange(outer_code, outer_opts, body, path)
            del outer_opts, body
            if response.option(coap.OSCORE) is None:
                raise CoapRefused(response.code, None)
            inner = security.unprotect(response, piv)
            echo = inner.option(coap.ECHO)
            if inner.code != coap.UNAUTHORIZED or echo is None or echoed:
                return inner
            echoed = True
            opts = [o for o in opts if o[0] != coap.ECHO]
            opts.append((coap.ECHO, echo))

    async def _exchange(self, code, opts, payload, path):
        """One CON request on the wire, retransmitted until answered: the response."""
        mid = self._next_mid()
        token = self._board.urandom(4)
        datagram = coap.encode(coap.CON, code, mid, token, opts, payload)
        timeout = self._initial_timeout()
        for attempt in range(self._max_retransmit + 1):
            if attempt:
                self.retransmissions += 1
            self._link.send(datagram)
            outcome = await self._await_answer(mid, token, timeout)
            if outcome is not None:
                if outcome == "separate":
                    return await self._await_separate(token)
                return outcome
            timeout *= 2
        raise CoapTimeout("no answer to " + path)

    async def _await_answer(self, mid, token, timeout_ms):
        board = self._board
        start = board.ticks_ms()
        remaining = timeout_ms
        while remaining > 0:
            msg = await self._receive(remaining)
            remaining = timeout_ms - board.ticks_diff(board.ticks_ms(), start)
            if msg is None:
                continue
            if msg.mid == mid and msg.mtype == coap.ACK:
                if msg.code == coap.EMPTY:
                    return "separate"
                if msg.token == token:
                    return msg
            elif msg.mid == mid and msg.mtype == coap.RST:
                raise CoapRefused("reset")
            elif msg.token == token and msg.mtype in (coap.CON, coap.NON):
                # Our ACK was lost, the response came separately all the same.
                self._ack(msg)
                return msg
            else:
                self._stray(msg)
        return None

    async def _await_separate(self, token):
        board = self._board
        start = board.ticks_ms()
        remaining = SEPARATE_TIMEOUT_MS
        while remaining > 0:
            msg = await self._receive(remaining)
            remaining = SEPARATE_TIMEOUT_MS - board.ticks_diff(board.ticks_ms(), start)
            if msg is None:
                continue
            if msg.token == token and msg.mtype in (coap.CON, coap.NON) and msg.code:
                self._ack(msg)
                return msg
            self._stray(msg)
        raise CoapTimeout("separate response never came")

    async def _receive(self, timeout_ms):
        data = await self._link.recv(timeout_ms)
        if data is None:
            return None
        try:
            return coap.decode(data)
        except CoapFormatError:
            return None

    def _ack(self, msg):
        if msg.mtype == coap.CON:
            self._link.send(coap.encode(coap.ACK, coap.EMPTY, msg.mid))
            self._acked_mid = msg.mid

    def _stray(self, msg):
        if msg.mtype != coap.CON:
            return
        if msg.mid == self._acked_mid:
            # A retransmitted separate response: our ACK was lost, send it again.
            self._link.send(coap.encode(coap.ACK, coap.EMPTY, msg.mid))
        else:
            self._link.send(coap.encode(coap.RST, coap.EMPTY, msg.mid))
