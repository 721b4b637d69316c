# mypy: ignore-errors
# (MicroPython code: it runs inside the VM, never on CPython.)
"""``cryptolib`` on the MicroPython VM engine, which the WebAssembly build lacks: the ESP32
port's API (``aes(key, mode[, IV])`` with ``encrypt``/``decrypt``, ECB and CBC), its AES done
on the host, as the chip does it in its AES hardware. Each call is one synchronous call
through the bridge (``aes`` in ``host.py``, answered by ``hw/engines/micropython.py``); this
object keeps the one-direction rule and the CBC chaining, so the host keeps no state.
Standalone (only the bridge's ``simpul_host``), so the firmware's tests on a bare VM use it
too (``hw/firmware_tools/vm_test_runner.mjs`` answers the same call)."""

import json
from binascii import hexlify, unhexlify

import simpul_host

MODE_ECB = 1
MODE_CBC = 2


def _aes(key, mode, encrypt, iv, data):
    request = ["aes", hexlify(key).decode(), mode, encrypt, hexlify(iv).decode()]
    request.append(hexlify(data).decode())
    reply = json.loads(simpul_host.call(json.dumps(request)))
    if isinstance(reply, dict):
        raise ValueError("aes")
    return unhexlify(reply[0])


class aes:
    def __init__(self, key, mode, IV=None):
        if len(key) not in (16, 24, 32):
            raise ValueError("key")
        if mode not in (MODE_ECB, MODE_CBC):
            raise ValueError("mode")
        self._key = bytes(key)
        self._mode = mode
        self._iv = bytes(IV) if IV is not None else bytes(16)
        self._encrypt = None

    def encrypt(self, in_buf, out_buf=None):
        return self._run(True, in_buf, out_buf)

    def decrypt(self, in_buf, out_buf=None):
        return self._run(False, in_buf, out_buf)

    def _run(self, encrypt, data, out):
        if self._encrypt not in (None, encrypt):
            raise ValueError("can't encrypt & decrypt")
        self._encrypt = encrypt
        if len(data) % 16:
            raise ValueError("blksize % 16")
        if out is not None and len(out) < len(data):
            raise ValueError("output too small")
        data = bytes(data)
        result = _aes(self._key, self._mode, encrypt, self._iv, data) if data else b""
        if self._mode == MODE_CBC and data:
            self._iv = (result if encrypt else data)[-16:]
        if out is None:
            return result
        out[: len(result)] = result
        return out
