"""The firmware's OSCORE on the real MicroPython VM, its cryptolib the VM engine's (AES on the
host through the bridge): aiocoap's OSCORE accepts the board's protected request and the
board verifies aiocoap's protected answer; what it costs stays small. The figures themselves
are the ``firmware_oscore`` benchmark's (tests/bench/firmware_oscore.py)."""

from __future__ import annotations

from tests.bench.firmware_oscore import BODY_BYTES, measure


async def test_aiocoap_accepts_a_request_protected_on_the_vm_and_the_vm_verifies_the_answer() -> (
    None
):
    figures = await measure(rounds=3)  # asserts both directions against aiocoap itself
    assert figures["aiocoap_accepted"]
    assert 0 < figures["heap_context_bytes"] < 2048, figures
    # In flight: the outer options and the ciphertext, about the body's size.
    assert BODY_BYTES < figures["heap_held_request_bytes"] < BODY_BYTES + 512, figures
    assert figures["heap_code_bytes"] < 16 * 1024, figures
