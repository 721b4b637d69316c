"""What the gateway says of itself and its boards in its ``state`` message.

Read from the host (CPU temperature, the state directory's disk usage, load average:
gpiozero's internal devices, :class:`gateway.pi.host.HostSensors`; free and total bytes and
the disk verdict from :mod:`gateway.store.budget`), from the daemon's GPIO when the gateway
has a ``[gateway.pi]`` table (the LED's state, the pairing window, the wired boards), and
from ``gateway.db`` (the outbox's positions, every uplink's cursor, the registry, each board's
OTA state). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from gateway.pi.host import HostSensors
from gateway.store.budget import disk_state, filesystem_usage
from gateway.store.registry import StoreReader
from gateway.store.releases import ReleaseTable

#: Boards listed in one state message at most (the most recently seen first): a state
#: message must stay well under the broker's message size limit.
MAX_STATE_BOARDS: Final = 5000


class UplinkProgress:
    """Each uplink's progress, remembering the previous reading: an uplink is ``up`` when it
    has nothing waiting or moved since the last state (its process and connection are in
    another process; progress is what this one can see)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def read(
        self, reader: StoreReader, readings_uplinks: list[str], batch_uplinks: list[str]
    ) -> tuple[dict[str, dict[str, Any]], int, dict[str, int]]:
        """(uplinks by name, backlog, outbox counters)."""
        positions = reader.positions()
        uplinks: dict[str, dict[str, Any]] = {}
        for name in readings_uplinks:
            delivered = positions.delivered_ids.get(name, 0)
            uplinks[name] = self._entry(name, delivered, positions.head_id - delivered)
        for name in batch_uplinks:
            delivered = positions.delivered_seqs.get(name, 0)
            uplinks[name] = self._entry(name, delivered, positions.newest_seq - delivered)
        # Readings not yet out: behind the slowest readings uplink or the batcher.
        cursors = [positions.delivered_ids.get(n, 0) for n in readings_uplinks]
        if batch_uplinks:
            cursors.append(positions.batched_id)
        backlog = positions.head_id - min(cursors) if cursors else 0
        return uplinks, max(0, backlog), dict(positions.counters)

    def _entry(self, name: str, delivered: int, lag: int) -> dict[str, Any]:
        moved = delivered != self._last.get(name, delivered)
        self._last[name] = delivered
        return {"up": lag <= 0 or moved, "delivered": delivered, "lag": max(0, lag)}


def gateway_health(
    state_dir: Path,
    reader: StoreReader,
    progress: UplinkProgress,
    *,
    readings_uplinks: list[str],
    batch_uplinks: list[str],
    counters: Mapping[str, int],
    control: Mapping[str, Any],
    host: HostSensors,
    pi: Mapping[str, Any] | None = None,
    outbox_max_bytes: int = 0,
    outbox_policy: str = "refuse",
) -> dict[str, Any]:
    """The ``health`` map of a state message; ``pi``: the daemon's GPIO state, if it has
    any (``gateway.pi.panel.PiPanel.status``).

    ``disk`` is the one verdict on space (:func:`gateway.store.budget.disk_state`:
    ``state`` ``ok``, ``nearly_full`` or ``full``, and the figures behind it).
    """
    filesystem = filesystem_usage(state_dir)
    free, total = filesystem if filesystem is not None else (0, 0)
    uplinks, backlog, outbox = progress.read(reader, readings_uplinks, batch_uplinks)
    health = {
        "cpu_temp_c": host.cpu_temp_c(),
        "disk_free": free,
        "disk_total": total,
        "disk_usage_pct": host.disk_usage_pct(),
        "disk": disk_state(
            reader.used_bytes(), outbox_max_bytes, policy=outbox_policy, filesystem=filesystem
        ),
        "load1": host.load1(),
        "backlog": backlog,
        "uplinks": uplinks,
        "counters": {**outbox, **counters},
        "control": dict(control),
    }
    if pi is not None:
        health["pi"] = dict(pi)
    return health


def boards_state(reader: StoreReader, releases: ReleaseTable) -> dict[str, dict[str, Any]]:
    """Every board's last health and OTA state, as the state message lists them."""
    ota = {
        board: (running, state, detail, at)
        for board, running, state, detail, at in releases.board_ota()
    }
    records = sorted(reader.boards(), key=lambda r: r.last_seen_ms, reverse=True)
    boards: dict[str, dict[str, Any]] = {}
    for record in records[:MAX_STATE_BOARDS]:
        running, state, detail, at = ota.get(record.board_id, (0, None, None, None))
        boards[record.board_id] = {
            "last_seen_ms": record.last_seen_ms,
            "health": record.last_health,
            "health_ms": record.health_ms,
            "running": running,
            "ota": None if state is None else {"state": state, "detail": detail, "at": at},
        }
    return boards


__all__ = ["MAX_STATE_BOARDS", "UplinkProgress", "boards_state", "gateway_health"]
