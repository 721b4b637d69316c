"""A fleet directory with its keys and fleet.db, and emulated boards on real ptys."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet import keys as fleet_keys
from fleet.store import DB_NAME, FleetStore
from gateway.codec import cose
from hw.engines import ENGINES
from hw.engines.base import BoardRunner
from tests.support import serial_board

PASSPHRASE = "correct horse battery staple"
SITE = "takengon"
GATEWAY = "gw-takengon-1"


@dataclass(frozen=True)
class FleetFixture:
    dir: Path
    root_key: Path

    @property
    def db(self) -> Path:
        return self.dir / DB_NAME


def make_fleet(base: Path) -> FleetFixture:
    """A fleet with root, release and operator keys, a site and a gateway in fleet.db."""
    now = int(time.time()) - 60
    fleet_dir, root_key = base / "fleet", base / "root.key"
    fleet_keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=now)
    fleet_keys.certify_operator(fleet_dir, root_key, PASSPHRASE, now=now)
    with FleetStore(fleet_dir / DB_NAME) as store:
        store.add_site(SITE, "Takengon")
        store.add_gateway(GATEWAY, SITE, cose.public_bytes(Ed25519PrivateKey.generate()))
    return FleetFixture(fleet_dir, root_key)


@pytest.fixture(scope="session")
def fleet_template(tmp_path_factory: pytest.TempPathFactory) -> FleetFixture:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def fleet(tmp_path: Path, fleet_template: FleetFixture) -> FleetFixture:
    """A fresh copy of the fleet (its fleet.db changes in tests)."""
    import shutil

    shutil.copytree(fleet_template.dir, tmp_path / "fleet")
    return FleetFixture(tmp_path / "fleet", fleet_template.root_key)


@pytest.fixture(params=ENGINES)
async def board(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BoardRunner]:
    """An emulated air node with its REPL on a pty, on each engine."""
    async with serial_board(request.param, tmp_path) as runner:
        yield runner
