"""A board's OSCORE key rotated at its gateway while it holds buffered readings, end to end
on both engines: the firmware (``firmware/app.py``, ``oscorekeys.install``) against a gateway
process whose keys file gives the board a new Master Secret.

The board's link is down while the gateway takes the new key, so readings pile up in its
flash; at its next contact, under the old key, the gateway's 2.04 hands it the new one, the
board writes it over ``/oscore.json`` and sends the rest under it. Every reading sampled is
stored and upstream exactly once, and the old key is refused afterwards: a captured request
replayed and a new request under it both get 4.01 and store nothing. A power cut at the key's
write, or at the write after it, leaves the board talking (under the old key or the new) and
loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.oscore.keys import BoardKey, encode_keys_file, generate
from hw.engines.base import BoardRunner, provision_oscore
from hw.engines.fleet import Fleet, plan_fleet
from hw.firmware_tools import firmware_module
from hw.flash import Flash
from hw.link import LinkFaults, UdpLink
from tests.gateway.oscore_support import UdpTap, send_raw
from tests.support import (
    FAST,
    HEALTH_READER,
    GatewayProcess,
    assert_exactly_once,
    assert_nothing_refused,
    drain,
    eventually,
    firmware_starts,
    fleet_keys,
    iter_console,
    provision_fleet,
    sampled_through,
    wait_upstream,
)

SEEDS = {"cpython": 131, "mpy": 137}


@dataclass
class Rig:
    gateway: GatewayProcess
    tap: UdpTap
    fleet: Fleet
    old: BoardKey
    new: BoardKey

    @property
    def board(self) -> BoardRunner:
        return self.fleet.runners[0]

    def rotate(self) -> None:
        """Give the board its new key in the gateway's keys file (picked up by its reload)."""
        path = Path(self.gateway.env["SIMPUL_GATEWAY__SECURITY__KEYS_FILE"])
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(encode_keys_file([self.new, HEALTH_READER]))
        os.replace(temporary, path)

    def switches(self) -> list[str]:
        """The board's console lines saying which key its requests go out under."""
        return [line for line in iter_console(self.board.root) if line.startswith("O oscore ")]

    def secret_on_flash(self) -> str:
        text = (self.board.root / "flash" / "oscore.json").read_text()
        secret: str = json.loads(text)["secret"]
        return secret


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    """Gateway processes a test started, killed at its end whatever happened."""
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.close()


@asynccontextmanager
async def rig(tmp_path: Path, engine: str, gateways: list[GatewayProcess]) -> AsyncIterator[Rig]:
    """One board and a gateway speaking only OSCORE, the board's datagrams through a tap;
    the board and the tap stop at the end, the gateway runs on (``gateways`` ends it)."""
    specs = plan_fleet(1, seed=SEEDS[engine], config=FAST)
    (old,) = fleet_keys(specs)
    new = generate(old.board_id, old.material.sid)  # a fresh Master Secret, the same ids
    gateway = GatewayProcess(
        tmp_path / "gateway",
        oscore_keys=[old],
        env={"SIMPUL_GATEWAY__SECURITY__RELOAD_INTERVAL_MS": "100"},
    )
    tap = UdpTap(gateway.address)
    fleet = Fleet(specs, tmp_path, ("127.0.0.1", tap.port), engine=engine)
    provision_fleet(fleet, [old])
    gateways.append(gateway)
    await asyncio.to_thread(gateway.start)
    async with tap:
        fleet.start()
        try:
            yield Rig(gateway, tap, fleet, old, new)
        finally:
            await fleet.stop()


async def rotate_while_buffering(rig: Rig) -> None:
    """Readings acknowledged under the old key, then a few buffered while the link is down
    and the gateway takes the new key; then the link comes back."""
    board = rig.board
    assert await eventually(lambda: board.record.acked_through >= 2, 60), "nothing acknowledged"
    board.faults.link.down = True
    buffered_from = max(board.record.samples)
    assert await eventually(lambda: max(board.record.samples) >= buffered_from + 4, 30)
    rig.rotate()

    async def rotating() -> bool:
        return bool((await rig.gateway.health())["security"]["rotating"] == 1)

    for _ in range(50):
        if await rotating():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the gateway never took the new key")
    assert board.record.acked_through < max(board.record.samples)  # readings wait in flash
    board.faults.link.down = False


async def deliver_all(rig: Rig) -> dict[str, int]:
    """Let the board switch keys (the gateway saw its new key used, so retired the old one)
    and sample on for a while, then drain what it sampled."""
    for _ in range(300):
        if (await rig.gateway.health())["security"]["rotating"] == 0:
            break
        await asyncio.sleep(0.2)
    else:
        switches = rig.switches()
        raise AssertionError(f"the board never used its new key ({len(switches)} key lines)")
    switched_at = max(rig.board.record.samples)
    assert await eventually(lambda: max(rig.board.record.samples) >= switched_at + 3, 30)
    through = sampled_through(rig.fleet)
    await drain(rig.fleet, through)
    return through


async def old_key_request(rig: Rig, tmp_path: Path) -> int:
    """A request under the board's old key, by the firmware's own client: the code of the
    gateway's refusal."""
    coap = firmware_module("coap")
    coapclient = firmware_module("coapclient")
    oscorekeys = firmware_module("oscorekeys")
    errors = firmware_module("errors")
    flash = Flash(tmp_path / "old-key-flash")
    flash.mkdir("/data")
    flash.host_path("/data/oscore_seq").write_text("1000000")  # beyond the board's numbers
    material = rig.old.material
    provision_oscore(flash, sid=material.sid, secret=material.secret, salt=material.salt)
    link = UdpLink(*rig.gateway.address, LinkFaults())
    client = coapclient.Client(_HostBoard(), link, 500, 1, oscorekeys.load(flash))
    try:
        await client.request(coap.POST, "/readings", b"\x81\xa1\x00\x01", coap.SENML_CBOR)
    except errors.CoapRefused as refused:
        return int(refused.code)
    finally:
        link.close()
    raise AssertionError("a request under the retired key was answered under it")


class _HostBoard:
    """What ``coapclient.Client`` asks of a board: clocks and randomness."""

    def ticks_ms(self) -> int:
        return int(asyncio.get_running_loop().time() * 1000)

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def urandom(self, n: int) -> bytes:
        return os.urandom(n)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["cpython", "mpy"])
async def test_a_rotated_key_reaches_the_board_at_its_next_contact_and_nothing_is_lost(
    tmp_path: Path, engine: str, gateways: list[GatewayProcess]
) -> None:
    async with rig(tmp_path, engine, gateways) as r:
        await rotate_while_buffering(r)
        old_requests = [d for d in r.tap.captured if d[1] == 0x02]  # POSTs, under the old key
        through = await deliver_all(r)
        health = await r.gateway.health()
    await wait_upstream(r.gateway, r.fleet, through)
    assert_exactly_once(r.gateway, r.fleet, through)
    assert_nothing_refused(health)
    assert health["security"]["rotating"] == 0  # the board used its new key: old one retired
    assert r.secret_on_flash() == r.new.material.secret.hex()
    assert len(r.switches()) == 2  # at the start, then at the switch (no reboot)
    assert r.old.material.secret.hex() not in r.gateway.stderr_text()
    assert r.new.material.secret.hex() not in r.gateway.stderr_text()

    # The old key is refused from now on: captured requests replayed, and a new one.
    stored = r.gateway.stored()
    for datagram in old_requests[-3:]:
        answer = await send_raw(datagram, r.gateway.address)
        assert answer[1] == 0x81, answer  # 4.01, in clear
    assert await old_key_request(r, tmp_path) == 0x81
    assert r.gateway.stored() == stored
    refused = (await r.gateway.health())["security"]["refused"]
    # Below the new key's window (replayed) or above it and not under its key (bad_mac).
    assert refused["replayed"] + refused["bad_mac"] == 4, refused
    assert refused["bad_mac"] >= 1, refused
    assert r.gateway.stop() == 0


@pytest.mark.slow
@pytest.mark.parametrize("after", [0, 1, 2], ids=["key_write", "next_write", "second_write"])
@pytest.mark.parametrize("engine", ["cpython", "mpy"])
async def test_a_power_cut_at_the_key_write_leaves_the_board_talking_and_loses_nothing(
    tmp_path: Path, engine: str, after: int, gateways: list[GatewayProcess]
) -> None:
    async with rig(tmp_path, engine, gateways) as r:
        faults = r.board.faults.flash
        faults.cut_at_path, faults.cut_after_path = "/oscore.json.new", after
        await rotate_while_buffering(r)
        cut = await eventually(
            lambda: faults.cut_at_path is None and faults.cut_at_write is None, 60
        )
        assert cut, "no power cut happened"
        assert await eventually(lambda: len(firmware_starts(r.board.root)) >= 2, 30)
        through = await deliver_all(r)
        health = await r.gateway.health()
    await wait_upstream(r.gateway, r.fleet, through)
    assert r.gateway.stop() == 0
    console = list(iter_console(r.board.root))
    assert any(line.startswith("-- power cut during flash write") for line in console), console
    assert_exactly_once(r.gateway, r.fleet, through)
    assert_nothing_refused(health)
    assert health["security"]["rotating"] == 0
    assert r.secret_on_flash() == r.new.material.secret.hex()
