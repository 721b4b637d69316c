"""Fixtures for release tests: the deterministic chain of tests/release/chain.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.release.chain import Chain

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"

#: RFC 8032 §7.1 TEST 1 secret key, so vectors stay fixed.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")

if str(FIRMWARE) not in sys.path:
    sys.path.insert(0, str(FIRMWARE))


@pytest.fixture
def chain() -> Chain:
    return Chain()
