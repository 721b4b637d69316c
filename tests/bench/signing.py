"""Signing throughput: readings/s of ``gateway.batches.format.build``, and the Ed25519 share.

In process, no I/O: it measures the codec the uplinks run on every batch, so the drain of a
backlog to a broker can be compared against it (the drain cannot be faster than this).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.batches.format import ChainState, build, decode
from gateway.codec.cose import sig_structure

BATCH_SIZES = (100, 1000, 5000)
_BOARDS = 50
_START_MS = 1_700_000_000_000


class _Row(NamedTuple):
    id: int
    board_id: str
    name: str
    unit: str | None
    kind: str
    value: float
    time_ms: int


def _rows(count: int) -> list[_Row]:
    # What a busy gateway's outbox holds: many boards, floats, units, distinct times.
    return [
        _Row(i, f"aq-{i % _BOARDS:02d}", "pm2_5", "ug/m3", "v", 10.0 + (i % 997) / 8, _START_MS + i)
        for i in range(1, count + 1)
    ]


def _build_rate(key: Ed25519PrivateKey, rows: list[_Row], seconds: float) -> tuple[float, int, int]:
    """(readings/s, batches built, bytes per batch) building batches for ``seconds``."""
    state = ChainState()
    batches = 0
    encoded = b""
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        encoded, state = build(key, state, rows, _START_MS, gateway="gw-bench", site="bench")
        batches += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    return batches * len(rows) / elapsed, batches, len(encoded)


def _sign_time(key: Ed25519PrivateKey, encoded: bytes, repeats: int) -> float:
    """Seconds per Ed25519 signature over this batch's Sig_structure (encoding included)."""
    batch = decode(encoded)
    started = time.perf_counter()
    for _ in range(repeats):
        key.sign(sig_structure(batch.protected, batch.payload))
    return (time.perf_counter() - started) / repeats


def _verify_rate(encoded: bytes, seconds: float, readings: int) -> float:
    """Readings/s a consumer decodes (strictly) — the verify side, for comparison."""
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        decode(encoded)
        count += 1
    return count * readings / (time.perf_counter() - started)


def signing_throughput(seconds: float) -> dict[str, Any]:
    """Build signed batches of several sizes for about ``seconds`` in all; report rates."""
    key = Ed25519PrivateKey.generate()
    share = max(seconds / (len(BATCH_SIZES) + 1), 0.2)
    figures: dict[str, Any] = {}
    for size in BATCH_SIZES:
        rows = _rows(size)
        _build_rate(key, rows, min(0.2, share))  # warm-up
        rate, batches, size_bytes = _build_rate(key, rows, share)
        encoded, _ = build(key, ChainState(), rows, _START_MS, gateway="gw-bench", site="bench")
        per_batch_s = size / rate
        sign_s = _sign_time(key, encoded, max(20, batches // 4))
        figures[f"batch_{size}"] = {
            "readings_per_s": round(rate),
            "batches": batches,
            "bytes_per_batch": size_bytes,
            "bytes_per_reading": round(size_bytes / size, 1),
            "signing_share": round(sign_s / per_batch_s, 3),
        }
    encoded, _ = build(key, ChainState(), _rows(1000), _START_MS, gateway="gw-bench", site="bench")
    figures["decode_batch_1000_readings_per_s"] = round(_verify_rate(encoded, share, 1000))
    figures["target_readings_per_s"] = 100_000
    return {
        "method": (
            "gateway.batches.format.build in one process on prepared outbox rows (50 boards, float "
            f"values with units, distinct times) for batches of {', '.join(map(str, BATCH_SIZES))}"
            f" readings, {share:.1f} s each after a warm-up: CBOR payload of resolved SenML "
            "records (cbor2's C encoder), Ed25519 COSE_Sign1, SHA-256 chain digest. "
            "signing_share = time of one Ed25519 signature over the batch's Sig_structure "
            "divided by the time to build one batch. decode_* = strict decode of a batch of "
            "1000 on the consumer side (signature check not included)"
        ),
        "figures": figures,
    }


if __name__ == "__main__":
    import json
    import sys

    print(
        json.dumps(signing_throughput(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0), indent=2)
    )
