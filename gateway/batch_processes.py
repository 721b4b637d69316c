"""Process mains of the batcher, the batch uplinks and the outbox keeper.

Each runs in a process of its own under :class:`gateway.uplinks.UplinkSupervisor` (``spawn``),
at the uplinks' lower CPU priority, and exits when asked or when its gateway is gone. Each
first takes its lock in the state directory (:func:`gateway.locks.hold_lock`), so that one
left over from a killed gateway has exited before its successor signs or sends anything.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from typing import Final

from gateway.batch_log import BatchLog
from gateway.batch_uplink import Backoff, BatchSender, BatchUplink
from gateway.batcher import Batcher
from gateway.config import GatewayConfig, parse_bind
from gateway.identity import load_or_create
from gateway.locks import hold_lock
from gateway.outbox_budget import Consumers, OutboxKeeper
from gateway.uplink_batch_file import UPLINK_NAME as BATCH_FILE_UPLINK
from gateway.uplink_batch_file import BatchFileSender
from gateway.uplink_file import UPLINK_NAME as FILE_UPLINK
from gateway.uplink_http import UPLINK_NAME as HTTP_UPLINK
from gateway.uplink_http import HttpSender
from gateway.uplink_mqtt import UPLINK_NAME as MQTT_UPLINK
from gateway.uplink_mqtt import MqttSender

log = logging.getLogger(__name__)

BATCHER: Final = "batcher"
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
    )
    try:
        keeper.run(stopping, config.outbox.check_interval_ms / 1000)
    finally:
        keeper.close()


def _run_batch_uplink(
    config: GatewayConfig,
    stop: EventType,
    name: str,
    make_sender: Callable[[BatchLog], BatchSender],
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
        BatchUplink(
            name,
            batch_log,
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
    host, port = parse_bind(settings.broker)
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


#: Each process by name: the function it runs.
BATCH_MAINS: Final[dict[str, Callable[[GatewayConfig, EventType], None]]] = {
    BATCHER: run_batcher,
    OUTBOX_KEEPER: run_outbox_keeper,
    MQTT_UPLINK: run_mqtt_uplink,
    HTTP_UPLINK: run_http_uplink,
    BATCH_FILE_UPLINK: run_batch_file_uplink,
}


def enabled_batch_processes(config: GatewayConfig) -> list[str]:
    """The batcher, keeper and batch uplink processes this configuration runs."""
    names = [BATCHER] if batching(config) else []
    if batching(config) or config.outbox.max_bytes > 0:
        names.append(OUTBOX_KEEPER)
    return names + enabled_batch_uplinks(config)


__all__ = [
    "BATCHER",
    "BATCH_MAINS",
    "BATCH_UPLINKS",
    "OUTBOX_KEEPER",
    "consumers",
    "enabled_batch_processes",
    "enabled_batch_uplinks",
]
