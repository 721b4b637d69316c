"""The gateway's state as the status LED shows it, read from what the gateway already knows.

* **disk nearly full**: the gateway's one verdict on space
  (:func:`gateway.store.budget.disk_state`, the ``disk`` of its health) is not ``ok``: the
  outbox past 90 % of its budget, or the state directory's file system past 90 % or nearly
  out of room; or the budget's ``refuse`` policy is refusing readings;
* **uplink down**: an uplink (or the batcher) has something to deliver and its cursor has
  not moved for ``uplink_down_after_s``;
* **boards silent**: a board heard in the last :data:`SILENT_MEMORY_S` has not been heard
  for ``online_window_s`` (a board gone longer is the fleet's alert, not the LED's);
* **update running**: a board is downloading, installing or trying a release.

Reads only; the daemon calls :meth:`Observer.observe` about once a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from gateway.config import GatewayConfig
from gateway.pi.status import Observation
from gateway.store.budget import disk_state, filesystem_usage
from gateway.store.registry import StoreReader
from gateway.store.releases import ReleaseTable
from gateway.uplinks.registry import BATCHER, consumers

#: How far back a board counts for "boards silent".
SILENT_MEMORY_S: Final = 86_400
#: OTA steps during which an update is running on a board.
UPDATING: Final = frozenset({"downloading", "verified", "installed", "trial"})


class UplinkWatch:
    """When each cursor last moved, on the monotonic clock."""

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self._clock = clock
        self._moved: dict[str, tuple[int, float]] = {}

    def stalled(self, name: str, delivered: int, lag: int) -> bool:
        """Whether ``name`` has had ``lag`` > 0 and not moved for ``after_s``."""
        now = self._clock()
        last = self._moved.get(name)
        if last is None or last[0] != delivered or lag <= 0:
            self._moved[name] = (delivered, now)
            return False
        return now - last[1] >= self.after_s


class Observer:
    """Builds an :class:`Observation` from the store, the budget and the file system."""

    def __init__(
        self,
        config: GatewayConfig,
        reader: StoreReader,
        releases: ReleaseTable,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        assert config.pi is not None
        self.config = config
        self.reader = reader
        self.releases = releases
        self.wall_ms = wall_ms
        self.uplinks = UplinkWatch(config.pi.uplink_down_after_s, clock)
        self.consumers = consumers(config)

    def observe(self, *, shutting_down: bool, pairing: bool, outbox_full: bool) -> Observation:
        return Observation(
            shutting_down=shutting_down,
            pairing=pairing,
            disk_nearly_full=outbox_full or self._disk_nearly_full(),
            uplink_down=self._uplink_down(),
            boards_silent=self._boards_silent(),
            update_running=any(
                state in UPDATING for _, _, state, _, _ in self.releases.board_ota()
            ),
        )

    def _disk_nearly_full(self) -> bool:
        outbox = self.config.outbox
        verdict = disk_state(
            self.reader.used_bytes(),
            outbox.max_bytes,
            policy=outbox.policy,
            filesystem=filesystem_usage(self.config.state_dir),
        )
        return bool(verdict["state"] != "ok")

    def _uplink_down(self) -> bool:
        at = self.reader.positions()
        cursors = [
            (name, at.delivered_ids.get(name, 0), at.head_id)
            for name in self.consumers.readings_uplinks
        ]
        if self.consumers.batching:
            cursors.append((BATCHER, at.batched_id, at.head_id))
        cursors += [
            (name, at.delivered_seqs.get(name, 0), at.newest_seq)
            for name in self.consumers.batch_uplinks
        ]
        down = False
        for name, delivered, head in cursors:
            # Every cursor is checked, so each one's clock of its last move stays current.
            down = self.uplinks.stalled(name, delivered, head - delivered) or down
        return down

    def _boards_silent(self) -> bool:
        now = self.wall_ms()
        _, recent = self.reader.board_counts(now - SILENT_MEMORY_S * 1000)
        _, online = self.reader.board_counts(now - self.config.online_window_s * 1000)
        return recent > online


__all__ = ["SILENT_MEMORY_S", "UPDATING", "Observer", "UplinkWatch"]
