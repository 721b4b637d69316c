"""The store on its own: group commit, outbox cursors, corrupt files; the writer's wire
format; and config loading."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.codec.senml import Reading
from gateway.config import LimitsConfig, load_config
from gateway.errors import (
    BadPayload,
    ConfigError,
    GatewayError,
    OutboxFull,
    PayloadTooLarge,
    StoreCorrupt,
    StoreUnavailable,
)
from gateway.intake.requests import Counters
from gateway.intake.writer import (
    ERRORS_BY_REASON,
    KIND_READINGS,
    decode_replies,
    decode_requests,
    encode_reply,
    encode_request,
)
from gateway.intake.writer_link import WriterLink
from gateway.store.outbox import Outbox
from gateway.store.registry import StoreReader
from gateway.store.schema import prepare
from gateway.store.writer import (
    HealthJob,
    ReadingsJob,
    SequenceRange,
    StoreWriter,
    SubmitResult,
)


def readings(count: int, start_ms: int = 1_700_000_000_000, board: str = "b1") -> list[Reading]:
    return [Reading(board, "t", "Cel", "v", i, start_ms + i * 1000) for i in range(count)]


def job(rows: list[Reading], address: str | None = None, at: int = 1) -> ReadingsJob:
    return ReadingsJob(rows, address, None, at)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[StoreWriter]:
    prepare(tmp_path / "gateway.db")
    store = StoreWriter(tmp_path / "gateway.db")
    try:
        yield store
    finally:
        store.close()


def test_each_uplink_reads_the_outbox_with_its_own_cursor(
    tmp_path: Path, writer: StoreWriter
) -> None:
    writer.commit([job(readings(5))])
    mqtt, file = Outbox(tmp_path / "gateway.db", "mqtt"), Outbox(tmp_path / "gateway.db", "file")
    first = mqtt.fetch(3)
    assert [row.id for row in first] == [1, 2, 3]
    mqtt.mark_delivered(first[-1].id)
    assert [row.id for row in mqtt.fetch(10)] == [4, 5]
    assert [row.id for row in file.fetch(10)] == [1, 2, 3, 4, 5]
    assert (mqtt.backlog, file.backlog) == (2, 5)
    mqtt.close()
    file.close()
    assert Outbox(tmp_path / "gateway.db", "mqtt").delivered_id == 3
    assert Outbox(tmp_path / "gateway.db", "file").delivered_id == 0
    assert StoreReader(tmp_path / "gateway.db").delivered_ids() == {"mqtt": 3}


def test_outbox_notices_rows_the_writer_commits(tmp_path: Path, writer: StoreWriter) -> None:
    box = Outbox(tmp_path / "gateway.db", "file")
    assert not box.wait_for_rows(0.1)
    later = threading.Timer(0.2, writer.commit, args=([job(readings(1))],))
    later.start()
    try:
        assert box.wait_for_rows(5)
    finally:
        later.join()
    box.mark_delivered(1)
    assert not box.wait_for_rows(5, stop=lambda: True)  # a stop ends the wait early


def test_duplicates_are_stored_once_and_counted(writer: StoreWriter) -> None:
    first, again = writer.commit([job(readings(3)), job(readings(4))])
    assert (first, again) == (SubmitResult(3, 0), SubmitResult(1, 3))


def test_a_job_that_cannot_be_stored_does_not_fail_its_group(
    tmp_path: Path, writer: StoreWriter
) -> None:
    unstorable = Reading("b2", "t", None, "v", [1, 2], 1_700_000_000_000)  # type: ignore[arg-type]
    outcomes = writer.commit([job(readings(2)), job([unstorable]), job(readings(1, board="b3"))])
    assert outcomes[0] == SubmitResult(2, 0)
    assert isinstance(outcomes[1], StoreUnavailable)
    assert outcomes[2] == SubmitResult(1, 0)
    reader = StoreReader(tmp_path / "gateway.db")
    assert reader.head_id == 3
    assert reader.board("b2") is None


def test_registry_keeps_each_boards_latest_address_and_sequence(
    tmp_path: Path, writer: StoreWriter
) -> None:
    writer.commit(
        [
            ReadingsJob(readings(1), "10.0.0.1:5683", SequenceRange(0, 1), 100),
            ReadingsJob(readings(1, start_ms=1_800_000_000_000), "10.0.0.2:5683", None, 200),
            HealthJob("b9", '{"board": "b9"}', "10.0.0.9:5683", 150),
        ]
    )
    reader = StoreReader(tmp_path / "gateway.db")
    board = reader.board("b1")
    assert board is not None
    assert (board.first_seen_ms, board.last_seen_ms) == (100, 200)
    assert (board.address, board.last_seq) == ("10.0.0.2:5683", 0)
    health = reader.board("b9")
    assert health is not None
    assert health.last_health == {"board": "b9"}
    assert reader.board_counts(150) == (2, 2)


def test_outbox_ids_do_not_go_back_after_old_rows_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    prepare(path)
    store = StoreWriter(path)
    store.commit([job(readings(3))])
    store.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM readings")
    db.commit()
    db.close()
    store = StoreWriter(path)
    try:
        store.commit([job(readings(1, start_ms=1_800_000_000_000))])
        assert [row.id for row in Outbox(path, "x").fetch(10)] == [4]
    finally:
        store.close()


def test_corrupt_database_is_reported_by_name_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    garbage = b"this is not a database" * 500
    path.write_bytes(garbage)
    with pytest.raises(StoreCorrupt, match=r"gateway\.db") as caught:
        prepare(path)
    assert isinstance(caught.value, OSError)
    assert path.read_bytes() == garbage


def test_writer_frames_round_trip_and_errors_come_back_as_their_class() -> None:
    frames = b"".join(
        encode_request(
            n,
            KIND_READINGS,
            b"\x80" * n,
            content_format=112,
            received_ms=1_700_000_000_000 + n,
            seq=SequenceRange(n, 2) if n % 2 else None,
            address=f"10.0.0.{n}:5683" if n != 2 else None,
        )
        for n in range(1, 4)
    )
    buffer = bytearray(frames + frames[:10])  # a frame cut short stays in the buffer
    requests, used = decode_requests(buffer)
    assert used == len(frames)
    assert [(r.request_id, r.payload, r.address, r.seq) for r in requests] == [
        (1, b"\x80", "10.0.0.1:5683", SequenceRange(1, 2)),
        (2, b"\x80\x80", None, None),
        (3, b"\x80\x80\x80", "10.0.0.3:5683", SequenceRange(3, 2)),
    ]
    replies, used = decode_replies(
        bytearray(encode_reply(7, SubmitResult(9, 1)) + encode_reply(8, BadPayload("record 2")))
    )
    assert (replies[0].request_id, replies[0].stored, replies[0].duplicates) == (7, 9, 1)
    assert replies[0].error is None
    assert isinstance(replies[1].error, BadPayload)
    assert str(replies[1].error) == "record 2"


async def test_stopped_writer_refuses_new_requests(tmp_path: Path) -> None:
    prepare(tmp_path / "gateway.db")
    link = WriterLink(
        tmp_path / "gateway.db", synchronous="FULL", limits=LimitsConfig(), counters=Counters()
    )
    await link.start()
    await link.stop()
    with pytest.raises(StoreUnavailable):
        await link.submit_readings(b"", 112, seq=None, address=None, received_ms=0)


@pytest.mark.parametrize("cls", [cls for _, cls in sorted(ERRORS_BY_REASON.items())])
def test_every_error_crosses_from_the_writer_whole_with_its_hint(cls: type[GatewayError]) -> None:
    """An error the writer reports comes back as the same class, message and option value
    (PayloadTooLarge's Size1, OutboxFull's Max-Age), never a TypeError on the way."""
    sent = cls.rebuild(f"{cls.reason} happened", 42)
    ((reply,), _) = decode_replies(bytearray(encode_reply(5, sent)))
    assert type(reply.error) is cls
    assert reply.error is not None
    assert (reply.error.message, reply.error.hint) == (sent.message, sent.hint)
    if cls in (PayloadTooLarge, OutboxFull):
        assert reply.error.hint == 42


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


def test_a_gateway_with_no_config_signs_its_readings_into_the_state_dir() -> None:
    config = load_config(env={})
    assert config.uplinks.batch_file.enabled
    assert config.batch_file_dir == config.state_dir / "batches"


def test_a_bad_value_in_the_file_is_refused_even_where_an_option_overrides_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "simpul.toml"
    path.write_text("[gateway.bind]\nport = 70000\n")
    with pytest.raises(ConfigError, match=r"0\.\.65535"):
        load_config(path, env={}, overrides={"bind.host": "127.0.0.1", "bind.port": 5683})


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
