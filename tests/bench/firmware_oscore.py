"""The firmware's OSCORE on the MicroPython VM: what protecting a request and verifying its
response cost a board, in time and heap, with aiocoap's OSCORE as the gateway's side.

A bare VM board (the VM engine's process, its ``cryptolib`` AES done on the host through the
bridge) holds key material written by ``provision_oscore``. It protects a readings request
of ``BODY_BYTES`` (a full batch: ``config.DEFAULTS["batch_bytes"]``) as ``coapclient`` does;
aiocoap's ``FilesystemSecurityContext`` (the gateway's role) verifies it and protects a 2.04
answer, which the board verifies. So each run also proves, on the VM, what
tests/firmware/test_oscore.py proves on CPython: aiocoap accepts the board's request.

Time: ``time.ticks_us`` in the VM around ``rounds`` protects, then as many verifications,
in one call each; a protect includes its share of the sequence store's flash writes (one per
``SEQ_STEP`` requests). Each AES call (two per message: the CBC-MAC and the key stream) is a
round trip to the host on this engine, where the ESP32 does it in its AES hardware, so the
figures are an upper bound for the cipher and exact for the rest of the code.

Heap: this VM collects only between calls, so ``allocated`` (``gc.mem_alloc()`` before and
after one protect or verify, in one call) is all a request allocates, garbage included;
``held`` (after collections, one call apart) is what a protected request in flight keeps
alive; ``allocated_by_vm_cryptolib`` what of a protect's allocation is the emulated
``cryptolib``'s (hex and JSON for the bridge; C with no such garbage on an ESP32);
``context`` the security context's keys and state; ``code`` the modules OSCORE adds
(``oscore``, ``oscorekeys`` and the VM engine's ``cryptolib``, loaded from source).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import aiocoap
from aiocoap.oscore import FilesystemSecurityContext

from hw.engines.base import provision_oscore
from hw.engines.chip import Faults
from hw.engines.micropython import machine_facts
from hw.engines.mpy.host import VmProcess
from hw.firmware_tools import firmware_module
from hw.flash import Flash

SID = bytes.fromhex("0b01")
SECRET = bytes.fromhex("00112233445566778899aabbccddeeff")
BODY_BYTES = int(firmware_module("config").DEFAULTS["batch_bytes"])

SETUP = """
import gc, time, binascii, coap, cryptolib
from flashfs import Flash
gc.collect()
"""
# Each step in a call of its own: the VM collects between calls, so gc.mem_alloc() at the
# start of a call is the live heap.
LOAD = """
_mark = gc.mem_alloc()
import oscore, oscorekeys
gc.collect()
"""
CONTEXT = """
print("code", gc.mem_alloc() - _mark)
_mark = gc.mem_alloc()
ctx = oscorekeys.load(Flash())
gc.collect()
"""
BODY = """
print("context", gc.mem_alloc() - _mark)
body = bytes(range(256)) * %d + bytes(%d)
opts = coap.uri_options("/readings", ["s=1", "n=64"])
opts.append((coap.CONTENT_FORMAT, coap.uint_option(coap.SENML_CBOR)))
gc.collect()
"""
PROTECT = """
_mark = gc.mem_alloc()
req = ctx.protect(coap.POST, opts, body)
print("protect_allocated", gc.mem_alloc() - _mark)
print("REQ", binascii.hexlify(coap.encode(0, req[0], 7, b"tk", req[1], req[2])).decode())
gc.collect()
"""
# What the emulated cryptolib allocates for a protect's two AES calls (hex and JSON for the
# bridge): on an ESP32 the module is C and allocates only its output, if any.
BRIDGE = """
print("held", gc.mem_alloc() - _mark)
_blocks = bytearray(%d)
_mark = gc.mem_alloc()
cryptolib.aes(bytes(16), 2, bytes(16)).encrypt(_blocks, _blocks)
cryptolib.aes(bytes(16), 1).encrypt(_blocks, _blocks)
print("bridge_allocated", gc.mem_alloc() - _mark)
"""
TIMED = """
resp = coap.decode(binascii.unhexlify(%r))
_mark = gc.mem_alloc()
inner = ctx.unprotect(resp, req[3])
print("unprotect_allocated", gc.mem_alloc() - _mark)
print("INNER", inner.code, inner.payload.decode())
_t = time.ticks_us()
for _ in range(%d):
    ctx.protect(coap.POST, opts, body)
print("protect_us", time.ticks_diff(time.ticks_us(), _t))
_t = time.ticks_us()
for _ in range(%d):
    ctx.unprotect(resp, req[3])
print("unprotect_us", time.ticks_diff(time.ticks_us(), _t))
"""


def _figures(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def gateway_context(root: Path) -> FilesystemSecurityContext:
    root.mkdir()
    settings = {"sender-id_hex": "", "recipient-id_hex": SID.hex(), "secret_hex": SECRET.hex()}
    (root / "settings.json").write_text(json.dumps(settings))
    return FilesystemSecurityContext(str(root))


async def measure(rounds: int = 50) -> dict[str, Any]:
    """Protect and verify on a bare VM board against aiocoap's OSCORE (see the module)."""
    with tempfile.TemporaryDirectory(prefix="simpul-oscore-bench-") as tmp:
        flash = Flash(Path(tmp) / "flash")
        flash.mkdir("/data")
        provision_oscore(flash, sid=SID, secret=SECRET)
        gateway = gateway_context(Path(tmp) / "gateway")
        output = bytearray()
        vm = VmProcess(
            flash=flash,
            buses={},
            faults=Faults(),
            rssi=lambda: None,
            reset_cause="power_on",
            machine=machine_facts("bench-oscore", "power_on"),
            on_output=output.extend,
            bare=True,
        )
        await vm.start()

        async def run(source: str) -> dict[str, str]:
            output.clear()
            error = await vm.execute(source, False)
            if error:
                raise RuntimeError(f"on the VM: {error}")
            return _figures(output.decode())

        try:
            await run(SETUP)
            await run(LOAD)
            figures = await run(CONTEXT)
            figures.update(await run(BODY % (BODY_BYTES // 256, BODY_BYTES % 256)))
            figures.update(await run(PROTECT))
            figures.update(await run(BRIDGE % (16 * ((BODY_BYTES + 40) // 16 + 2))))
            request = aiocoap.Message.decode(bytes.fromhex(figures.pop("REQ")))
            inner, request_id = gateway.unprotect(request)
            assert inner.code == aiocoap.POST, inner
            assert len(inner.payload) == BODY_BYTES, inner
            assert inner.opt.uri_path == ("readings",), inner
            answer, _ = gateway.protect(
                aiocoap.Message(code=aiocoap.CHANGED, payload=b"stored"), request_id
            )
            answer.mtype, answer.mid, answer.token = aiocoap.ACK, 7, b"tk"
            figures.update(await run(TIMED % (answer.encode().hex(), rounds, rounds)))
        finally:
            await vm.close()
            gateway._destroy()
    assert figures.pop("INNER") == f"{aiocoap.CHANGED.value} stored", figures
    return {
        "request_body_bytes": BODY_BYTES,
        "rounds": rounds,
        "protect_ms": int(figures["protect_us"]) / rounds / 1000,
        "verify_ms": int(figures["unprotect_us"]) / rounds / 1000,
        "heap_code_bytes": int(figures["code"]),
        "heap_context_bytes": int(figures["context"]),
        "heap_held_request_bytes": int(figures["held"]),
        "heap_protect_allocated_bytes": int(figures["protect_allocated"]),
        "heap_protect_allocated_by_vm_cryptolib_bytes": int(figures["bridge_allocated"]),
        "heap_verify_allocated_bytes": int(figures["unprotect_allocated"]),
        "aiocoap_accepted": True,
    }


def firmware_oscore(seconds: float) -> dict[str, Any]:
    """Per-request OSCORE cost and heap of the firmware on the MicroPython VM."""
    return asyncio.run(measure(rounds=max(20, int(seconds * 5))))
