"""The store on its own: outbox cursors, wake-ups, corrupt files; and config loading."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError, StoreCorrupt, StoreUnavailable
from gateway.senml import Reading
from gateway.store import Store


def readings(count: int, start_ms: int = 1_700_000_000_000) -> list[Reading]:
    return [Reading("b1", "t", "Cel", "v", i, start_ms + i * 1000) for i in range(count)]


async def test_each_uplink_reads_the_outbox_with_its_own_cursor(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    await store.open()
    try:
        await store.submit(readings(5))
        mqtt, file = await store.outbox("mqtt"), await store.outbox("file")
        first = await mqtt.fetch(3)
        assert [row.id for row in first] == [1, 2, 3]
        await mqtt.mark_delivered(first[-1].id)
        assert [row.id for row in await mqtt.fetch(10)] == [4, 5]
        assert [row.id for row in await file.fetch(10)] == [1, 2, 3, 4, 5]
        assert (mqtt.backlog, file.backlog) == (2, 5)
    finally:
        await store.close()
    reopened = Store(tmp_path / "gateway.db")
    await reopened.open()
    try:
        assert (await reopened.outbox("mqtt")).delivered_id == 3
        assert (await reopened.outbox("file")).delivered_id == 0
    finally:
        await reopened.close()


async def test_outbox_wakes_when_rows_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    await store.open()
    try:
        box = await store.outbox("file")
        waiter = asyncio.ensure_future(box.wait_for_rows())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await store.submit(readings(1))
        await asyncio.wait_for(waiter, 2)
    finally:
        await store.close()


async def test_outbox_ids_do_not_go_back_after_old_rows_are_deleted(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    await store.open()
    await store.submit(readings(3))
    await store.close()
    db = sqlite3.connect(tmp_path / "gateway.db")
    db.execute("DELETE FROM readings")
    db.commit()
    db.close()
    store = Store(tmp_path / "gateway.db")
    await store.open()
    try:
        await store.submit(readings(1, start_ms=1_800_000_000_000))
        assert [row.id for row in await (await store.outbox("x")).fetch(10)] == [4]
    finally:
        await store.close()


async def test_corrupt_database_is_reported_by_name_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    garbage = b"this is not a database" * 500
    path.write_bytes(garbage)
    with pytest.raises(StoreCorrupt, match=r"gateway\.db") as caught:
        await Store(path).open()
    assert isinstance(caught.value, OSError)
    assert path.read_bytes() == garbage


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.submit(readings(1))


def test_config_precedence_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "simpul.toml"
    path.write_text(
        '[gateway]\nsite = "from-file"\ngateway_id = "gw-file"\n'
        "[gateway.bind]\nport = 5700\n[gateway.uplinks.file]\nenabled = true\n"
    )
    env = {
        "SIMPUL_GATEWAY__SITE": "from-env",
        "SIMPUL_GATEWAY__UPLINKS__FILE__ENABLED": "false",
        "SIMPUL_GATEWAY__STORE__SYNCHRONOUS": "normal",
    }
    config = load_config(path, env=env, overrides={"site": "from-cli", "gateway_id": None})
    assert (config.site, config.gateway_id, config.bind.port) == ("from-cli", "gw-file", 5700)
    assert config.uplinks.file.enabled is False
    assert config.store.synchronous == "NORMAL"
    assert config.db_path == config.state_dir / "gateway.db"


def test_config_defaults_are_durable_and_listen_on_coap_port() -> None:
    config = load_config(env={})
    assert config.store.synchronous == "FULL"
    assert (config.bind.host, config.bind.port) == ("::", 5683)
    assert config.gateway_id.startswith("gw-")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIMPUL_GATEWAY__BIND__PORT": "http"}, "must be an integer"),
        ({"SIMPUL_GATEWAY__BIND__PORT": "70000"}, "0..65535"),
        ({"SIMPUL_GATEWAY__SITEE": "typo"}, "unknown setting"),
        ({"SIMPUL_GATEWAY__STORE__SYNCHRONOUS": "sometimes"}, "one of"),
    ],
)
def test_bad_config_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_unreadable_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})
