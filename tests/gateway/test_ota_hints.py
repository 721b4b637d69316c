"""Desired releases and the "update due" hint on 2.04, and each board's OTA state from its
health reports (``gateway.ota.hints``, ``gateway.ota.report``)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from aiocoap import Context
from aiocoap.numbers.codes import Code

from fleet.cli import main
from fleet.release import encode_release
from gateway.daemon import Gateway
from gateway.ota.cache import ReleaseCache
from gateway.ota.hints import UpdateHints
from gateway.store.releases import ReleaseTable, record_board_ota
from gateway.store.schema import prepare
from hw.engines.fleet import Fleet, plan_fleet
from tests.gateway.conftest import Client, gateway_config
from tests.release.chain import APP_FILES, DAY, NOW, Chain
from tests.support import FAST, drain, eventually, iter_console, sampled_through


def cache_release(state: Path, root_pub: Path, seq: int = 7) -> None:
    """A gateway state directory with release ``seq`` cached."""
    chain = Chain()
    root_pub.write_bytes(chain.root_public)
    config = gateway_config(state, **{"ota.root_public_key": root_pub})
    state.mkdir(parents=True, exist_ok=True)
    prepare(config.db_path)
    cache = ReleaseCache(config, chain.root_public)
    try:
        cache.add(encode_release(chain.manifest(seq=seq), APP_FILES), now=NOW + DAY)
    finally:
        cache.close()


def desired(state: Path, *args: str) -> int:
    return main(["gateway", "desired", *args, "--state-dir", str(state)])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_board_is_hinted_until_its_health_says_it_runs_the_desired_release(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    cache_release(state, tmp_path / "root.pub")
    table, writer = ReleaseTable(state / "gateway.db"), ReleaseTable(state / "gateway.db")
    clock = Clock()
    hints = UpdateHints(table, clock=clock, refresh_s=1.0)
    try:
        hints.saw_health("b1", "10.0.0.1:5000", {"board": "b1", "kind": "air"})
        hints.saw_health("b2", "10.0.0.2:5000", {"board": "b2", "kind": "water"})
        assert hints.for_board("b1") is None  # nothing desired
        writer.set_desired("kind", "air", 7)
        assert hints.for_board("b1") is None  # not read again before refresh_s
        clock.now += 1.5
        assert hints.for_board("b1") == 7
        assert hints.for_address("10.0.0.1:5000") == 7
        assert hints.for_board("b2") is None  # another kind
        assert hints.for_board("never-seen") is None  # no board setting, kind unknown
        writer.set_desired("board", "b2", 7)
        writer.set_desired("board", "new", 7)
        clock.now += 1.5
        assert hints.for_board("b2") == 7  # its own setting
        assert hints.for_board("new") == 7  # a board never heard from: told all the same
        ota = {"seq": 7, "state": "confirmed"}
        hints.saw_health("b1", "10.0.0.1:5000", {"board": "b1", "kind": "air", "ota": ota})
        assert hints.for_board("b1") is None
        assert hints.for_address("10.0.0.1:5000") is None
        # The board moved to another socket: the old address names no board any more.
        hints.saw_health("b2", "10.0.0.2:6000", {"board": "b2"})
        assert hints.for_address("10.0.0.2:5000") is None
        assert hints.for_address("10.0.0.2:6000") == 7
        assert hints.for_address(None) is None
    finally:
        table.close()
        writer.close()


def test_remembered_boards_are_bounded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    prepare(state / "gateway.db")
    table = ReleaseTable(state / "gateway.db")
    hints = UpdateHints(table, max_boards=10)
    try:
        hints.remember((f"b{i}", f"10.0.0.{i}:1", {"board": f"b{i}"}) for i in range(50))
        assert hints.for_address("10.0.0.49:1") is None  # known, nothing desired
        assert len(hints._boards) == 10
        assert len(hints._by_address) == 10
    finally:
        table.close()


def test_desired_set_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    cache_release(state, tmp_path / "root.pub")
    assert desired(state, "set", "--board", "aq-01", "--release", "7") == 0
    assert desired(state, "set", "--kind", "water", "--release", "7") == 0
    assert capsys.readouterr().out.splitlines() == [
        "desired release of board aq-01: 7",
        "desired release of kind water: 7",
    ]
    assert desired(state, "show") == 0
    assert capsys.readouterr().out == "board\taq-01\t7\nkind\twater\t7\n"


@pytest.mark.parametrize(
    "command", [["show"], ["status"], ["set", "--board", "b", "--release", "7"]]
)
def test_desired_never_creates_a_state_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    mistyped = tmp_path / "statte"
    assert desired(mistyped, *command) == 2
    assert f"no gateway state in {mistyped}" in capsys.readouterr().err
    assert not mistyped.exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--board", "aq-01", "--release", "8"], "release 8 is not cached"),
        (["--board", "aq-01", "--release", "0"], "is not a release seq"),
        (["--board", "aq-01", "--release", "seven"], "is not a release seq"),
        (["--board", "aq-01", "--release", "9" * 40], "is not a release seq"),
        (["--board", "a b", "--release", "7"], "is not a board id"),
        (["--board", "", "--release", "7"], "is not a board id"),
        (["--board", "x" * 500, "--release", "7"], "is not a board id"),
        (["--kind", "Air!", "--release", "7"], "is not a kind of board"),
    ],
)
def test_desired_set_refuses_what_names_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    state = tmp_path / "state"
    cache_release(state, tmp_path / "root.pub")
    assert desired(state, "set", *args) == 2
    err = capsys.readouterr().err
    assert said in err
    assert err.count("\n") == 1
    db = sqlite3.connect(state / "gateway.db")
    try:
        assert db.execute("SELECT count(*) FROM desired_releases").fetchone() == (0,)
    finally:
        db.close()


@pytest.fixture
async def hinting(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Client]]:
    """A gateway with release 7 cached and desired for board b1; a client."""
    state = tmp_path / "state"
    cache_release(state, tmp_path / "root.pub")
    assert desired(state, "set", "--board", "b1", "--release", "7") == 0
    gateway = Gateway(gateway_config(state, **{"ota.root_public_key": tmp_path / "root.pub"}))
    await gateway.start()
    context = await Context.create_client_context()
    try:
        yield gateway, Client(context, *gateway.bound_address)
    finally:
        await context.shutdown()
        await gateway.stop()


def health(board: str, **fields: Any) -> bytes:
    return bytes(cbor2.dumps({"board": board, "fw": "1.0.0", **fields}))


def board_ota(gateway: Gateway) -> list[tuple[str, int, str, str | None]]:
    db = sqlite3.connect(gateway.config.db_path)
    try:
        return db.execute("SELECT board_id, running, state, detail FROM board_ota").fetchall()
    finally:
        db.close()


async def test_the_2_04_carries_the_hint_only_while_an_update_is_due(
    hinting: tuple[Gateway, Client],
) -> None:
    gateway, client = hinting
    answer = await client.post("health", health("b1"), 60)
    assert answer.code == Code.CHANGED
    assert answer.opt.content_format == 60
    assert cbor2.loads(answer.payload) == {"ota": 7}
    # Readings from the socket its health came from are answered with the hint too.
    pack = [{-2: "urn:dev:simpul:b1:", -3: 1_700_000_000, 0: "temp", 1: "Cel", 2: 20.5}]
    readings = await client.post_pack(pack)
    assert readings.code == Code.CHANGED
    assert cbor2.loads(readings.payload) == {"ota": 7}
    # Another board, nothing desired for it: a bare 2.04.
    other = await client.post("health", health("b2"), 60)
    assert (other.code, other.payload) == (Code.CHANGED, b"")
    # The board says it runs 7: no more hints, and its OTA state is recorded.
    ota = {"seq": 7, "state": "confirmed", "detail": "self-test passed"}
    done = await client.post("health", health("b1", ota=ota), 60)
    assert (done.code, done.payload) == (Code.CHANGED, b"")
    assert board_ota(gateway) == [("b1", 7, "confirmed", "self-test passed")]
    # A readings request from the socket of b2, whose health came last, gets no hint.
    again = await client.post_pack(pack)
    assert (again.code, again.payload) == (Code.CHANGED, b"")
    assert gateway.stats()["ota_hints_sent"] == 2


#: ``ota`` fields a health report must not carry.
MALFORMED_OTA: list[object] = [
    "downloading",
    [7, "trial"],
    {"seq": -1, "state": "idle"},
    {"seq": 7.0, "state": "idle"},
    {"seq": True, "state": "idle"},
    {"state": "idle"},
    {"seq": 7},
    {"seq": 7, "state": "bricked"},
    {"seq": 7, "state": "idle", "detail": "x" * 121},
    {"seq": 7, "state": "idle", "detail": 5},
    {"seq": 7, "state": "idle", "extra": 1},
    {"seq": 7, "state": None},
]


async def test_a_malformed_ota_field_is_refused_with_a_diagnostic(
    hinting: tuple[Gateway, Client],
) -> None:
    gateway, client = hinting
    for ota in MALFORMED_OTA:
        answer = await client.post("health", health("b1", ota=ota), 60)
        assert answer.code == Code.BAD_REQUEST, ota
        assert b"'ota'" in answer.payload, ota
    assert board_ota(gateway) == []
    good = await client.post("health", health("b1", ota={"seq": 3, "state": "downloading"}), 60)
    assert good.code == Code.CHANGED
    assert board_ota(gateway) == [("b1", 3, "downloading", None)]


def test_desired_status_lists_each_boards_ota_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    cache_release(state, tmp_path / "root.pub")
    db = sqlite3.connect(state / "gateway.db")
    try:
        with db:
            record_board_ota(db, "b1", 0, "downloading", "12/40 blocks", 1_750_000_000_000)
            record_board_ota(db, "b1", 7, "trial", None, 1_750_000_060_000)
            record_board_ota(db, "b2", 3, "rejected", "stale", 1_750_000_000_000)
    finally:
        db.close()
    assert desired(state, "status") == 0
    assert capsys.readouterr().out.splitlines() == [
        "b1\t7\ttrial\t-\t2025-06-15T15:07:40Z",
        "b2\t3\trejected\tstale\t2025-06-15T15:06:40Z",
    ]


@pytest.mark.parametrize("engine", ["cpython", "mpy"])
async def test_todays_firmware_ignores_the_hint_and_keeps_sending(
    tmp_path: Path, engine: str
) -> None:
    """A board of today's release, hinted on every 2.04, goes on as if it were not (on the
    CPython engine and on the real MicroPython VM)."""
    state = tmp_path / "state"
    cache_release(state, tmp_path / "root.pub")
    (spec,) = plan_fleet(1, seed=3, config=FAST)
    assert desired(state, "set", "--board", spec.board_id, "--release", "7") == 0
    gateway = Gateway(gateway_config(state, **{"ota.root_public_key": tmp_path / "root.pub"}))
    await gateway.start()
    fleet = Fleet([spec], tmp_path, gateway.bound_address, engine=engine)
    assert fleet.runners[0].engine == engine
    fleet.start()
    try:
        hints = gateway.hints
        assert hints is not None
        assert await eventually(lambda: hints.sent >= 3, within=15)
        through = sampled_through(fleet)
        await drain(fleet, through, within=15)
    finally:
        await fleet.stop()
        await gateway.stop()
    lines = list(iter_console(tmp_path / "boards" / spec.board_id))
    assert [line for line in lines if line.startswith(("R ", "E gateway", "--"))] == []
    assert fleet.runners[0].record.boots == 1
