"""Every process the uplink supervisor runs, by name, and which ones a configuration needs.

The JSON Lines file uplink, the batcher, the outbox keeper and the batch uplinks (MQTT,
HTTP, batch file) each run in a process of their own under
:class:`gateway.uplinks.supervisor.UplinkSupervisor` (``spawn``), at the uplinks' lower CPU
priority, and exit when asked or when their gateway is gone. Each first takes its lock in
the state directory (:func:`gateway.processes.hold_lock`), so that one left over from a
killed gateway has exited before its successor signs or sends anything. Every uplink runs
the same loop (:class:`gateway.uplinks.delivery.Delivery`) over its own source and sender.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from typing import Final

from gateway.batches.keys import load_or_create
from gateway.config import GatewayConfig, parse_bind
from gateway.processes import hold_lock
from gateway.store.batch_log import BatchLog, BatchOutbox, StoredBatch
from gateway.store.budget import Consumers, OutboxKeeper
from gateway.store.outbox import Outbox
from gateway.uplinks.batch_file import UPLINK_NAME as BATCH_FILE_UPLINK
from gateway.uplinks.batch_file import BatchFileSender
from gateway.uplinks.batcher import Batcher
from gateway.uplinks.delivery import Backoff, Delivery, Sender
from gateway.uplinks.http import UPLINK_NAME as HTTP_UPLINK
from gateway.uplinks.http import HttpSender
from gateway.uplinks.jsonl import UPLINK_NAME as FILE_UPLINK
from gateway.uplinks.jsonl import JsonLinesSender
from gateway.uplinks.mqtt import UPLINK_NAME as MQTT_UPLINK
from gateway.uplinks.mqtt import MqttSender

log = logging.getLogger(__name__)

BATCHER: Final = "batcher"
CONTROL: Final = "control"
OUTBOX_KEEPER: Final = "outbox"
BATCH_UPLINKS: Final = (MQTT_UPLINK, HTTP_UPLINK, BATCH_FILE_UPLINK)


def enabled_batch_uplinks(config: GatewayConfig) -> list[str]:
    """Names of the batch uplinks this configuration runs."""
    uplinks = config.uplinks
    enabled = {
        MQTT_UPLINK: uplinks.mqtt.enabled,
        HTTP_UPLINK: uplinks.http.enabled,
        BATCH_FILE_UPLINK: uplinks.batch_file.enabled,
    }
    return [name for name in BATCH_UPLINKS if enabled[name]]


def batching(config: GatewayConfig) -> bool:
    """Whether the batcher runs: whenever some batch uplink is enabled."""
    return bool(enabled_batch_uplinks(config))


def consumers(config: GatewayConfig) -> Consumers:
    """Who reads the outbox under ``config`` (what the keeper may prune)."""
    return Consumers(
        batching=batching(config),
        readings_uplinks=[FILE_UPLINK] if config.uplinks.file.enabled else [],
        batch_uplinks=enabled_batch_uplinks(config),
    )


def _stopping(config: GatewayConfig, stop: EventType) -> Callable[[], bool]:
    os.nice(config.uplinks.nice)
    parent = multiprocessing.parent_process()

    def stopping() -> bool:
        return stop.is_set() or (parent is not None and not parent.is_alive())

    return stopping


def run_file_uplink(config: GatewayConfig, stop: EventType) -> None:
    """Main function of the JSON Lines file uplink's process."""
    stopping = _stopping(config, stop)
    settings = config.uplinks.file
    lock = hold_lock(config.state_dir / f"uplink-{FILE_UPLINK}.lock", stopping)
    if lock is None:
        return
    outbox = Outbox(config.db_path, FILE_UPLINK)
    try:
        Delivery(
            FILE_UPLINK,
            outbox,
            JsonLinesSender(
                outbox, config.file_uplink_dir, gateway_id=config.gateway_id, site=config.site
            ),
            window=settings.batch_size,
            backoff=Backoff(0.5, 30.0),
            linger_s=settings.linger_ms / 1000,
        ).run(stopping)
    finally:
        outbox.close()
        os.close(lock)


def run_batcher(config: GatewayConfig, stop: EventType) -> None:
    """Main function of the batcher's process."""
    stopping = _stopping(config, stop)
    lock = hold_lock(config.state_dir / "batcher.lock", stopping)
    if lock is None:
        return
    batch_log = BatchLog(config.db_path, synchronous="FULL")
    try:
        Batcher(
            batch_log,
            load_or_create(config.state_dir),
            gateway_id=config.gateway_id,
            site=config.site,
            max_readings=config.batches.max_readings,
            max_age_ms=config.batches.max_age_ms,
        ).run(stopping)
    finally:
        batch_log.close()
        os.close(lock)


def run_outbox_keeper(config: GatewayConfig, stop: EventType) -> None:
    """Main function of the outbox keeper's process (pruning, the drop policy)."""
    stopping = _stopping(config, stop)
    keeper = OutboxKeeper(
        config.db_path,
        consumers(config),
        max_bytes=config.outbox.max_bytes,
        policy=config.outbox.policy,
        keep_delivered_ms=config.outbox.keep_delivered_s * 1000,
    )
    try:
        keeper.run(stopping, config.outbox.check_interval_ms / 1000)
    finally:
        keeper.close()


def _run_batch_uplink(
    config: GatewayConfig,
    stop: EventType,
    name: str,
    make_sender: Callable[[BatchLog], Sender[StoredBatch]],
    *,
    window: int,
    backoff_base_ms: int,
    backoff_max_ms: int,
) -> None:
    stopping = _stopping(config, stop)
    lock = hold_lock(config.state_dir / f"uplink-{name}.lock", stopping)
    if lock is None:
        return
    batch_log = BatchLog(config.db_path)
    try:
        Delivery(
            name,
            BatchOutbox(batch_log, name),
            make_sender(batch_log),
            window=window,
            backoff=Backoff(backoff_base_ms / 1000, backoff_max_ms / 1000),
        ).run(stopping)
    finally:
        batch_log.close()
        os.close(lock)


def run_mqtt_uplink(config: GatewayConfig, stop: EventType) -> None:
    """Main function of the MQTT uplink's process."""
    settings = config.uplinks.mqtt
    # The old per-uplink broker setting still wins, without the broker's credentials.
    broker = None if settings.broker is not None else config.broker
    host, port = parse_bind(settings.broker or config.broker.address)
    _run_batch_uplink(
        config,
        stop,
        MQTT_UPLINK,
        lambda _: MqttSender(
            host,
            port,
            gateway_id=config.gateway_id,
            site=config.site,
            window=settings.window,
            keepalive_s=settings.keepalive_s,
            broker=broker,
            client_id_prefix=config.broker.client_id_prefix,
        ),
        window=settings.window,
        backoff_base_ms=settings.backoff_base_ms,
        backoff_max_ms=settings.backoff_max_ms,
    )


def run_http_uplink(config: GatewayConfig, stop: EventType) -> None:
    """Main function of the HTTP uplink's process."""
    settings = config.uplinks.http
    _run_batch_uplink(
        config,
        stop,
        HTTP_UPLINK,
        lambda _: HttpSender(
            settings.url, gateway_id=config.gateway_id, timeout_s=settings.timeout_ms / 1000
        ),
        window=1,  # one request at a time keeps the server's view in chain order
        backoff_base_ms=settings.backoff_base_ms,
        backoff_max_ms=settings.backoff_max_ms,
    )


def run_batch_file_uplink(config: GatewayConfig, stop: EventType) -> None:
    """Main function of the batch file uplink's process."""
    settings = config.uplinks.batch_file
    _run_batch_uplink(
        config,
        stop,
        BATCH_FILE_UPLINK,
        lambda batch_log: BatchFileSender(
            config.batch_file_dir, resume_at=batch_log.progress(BATCH_FILE_UPLINK)[1]
        ),
        window=settings.window,
        backoff_base_ms=settings.backoff_base_ms,
        backoff_max_ms=settings.backoff_max_ms,
    )


def control_enabled(config: GatewayConfig) -> bool:
    """Whether the control process runs: enabled, and a root key to check operators by."""
    return config.control.enabled and config.ota.root_public_key is not None


def run_control(config: GatewayConfig, stop: EventType) -> None:
    """Main function of the control process (``gateway.control.agent``)."""
    from gateway.control.agent import ControlAgent
    from gateway.control.apply import Controller
    from gateway.ota.cache import ReleaseCache, load_root_key
    from gateway.store.control import ControlStore
    from gateway.store.registry import StoreReader
    from gateway.store.releases import ReleaseTable

    stopping = _stopping(config, stop)
    root = load_root_key(config)
    if root is None:
        return
    lock = hold_lock(config.state_dir / "control.lock", stopping)
    if lock is None:
        return
    store = ControlStore(config.db_path)
    releases = ReleaseTable(config.db_path)
    cache = ReleaseCache(config, root)
    reader = StoreReader(config.db_path)
    try:
        controller = Controller(
            config, root, store=store, releases=releases, cache=cache, reader=reader
        )
        ControlAgent(
            config,
            controller,
            load_or_create(config.state_dir),
            readings_uplinks=[FILE_UPLINK] if config.uplinks.file.enabled else [],
            batch_uplinks=enabled_batch_uplinks(config),
        ).run(stopping)
        controller.board_keys.close()
    finally:
        reader.close()
        cache.close()
        releases.close()
        store.close()
        os.close(lock)


#: Each process by name: the function it runs.
PROCESS_MAINS: Final[dict[str, Callable[[GatewayConfig, EventType], None]]] = {
    FILE_UPLINK: run_file_uplink,
    BATCHER: run_batcher,
    OUTBOX_KEEPER: run_outbox_keeper,
    MQTT_UPLINK: run_mqtt_uplink,
    HTTP_UPLINK: run_http_uplink,
    BATCH_FILE_UPLINK: run_batch_file_uplink,
    CONTROL: run_control,
}


def enabled_processes(config: GatewayConfig) -> list[str]:
    """Names of the processes this configuration runs besides the server and the writer."""
    names = [FILE_UPLINK] if config.uplinks.file.enabled else []
    if batching(config):
        names.append(BATCHER)
    if batching(config) or config.outbox.max_bytes > 0:
        names.append(OUTBOX_KEEPER)
    names += enabled_batch_uplinks(config)
    if control_enabled(config):
        names.append(CONTROL)
    return names


__all__ = [
    "BATCHER",
    "BATCH_UPLINKS",
    "CONTROL",
    "FILE_UPLINK",
    "OUTBOX_KEEPER",
    "PROCESS_MAINS",
    "consumers",
    "control_enabled",
    "enabled_batch_uplinks",
    "enabled_processes",
]
