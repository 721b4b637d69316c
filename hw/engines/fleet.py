"""A fleet of emulated boards: planned over the programme's sites and node kinds, run together
in this process's event loop against one gateway, and counted for progress."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hw import profiles
from hw.engines import runner_for
from hw.engines.base import BoardSpec, provision_oscore
from hw.flash import Flash
from hw.signals import KINDS

if TYPE_CHECKING:
    from gateway.oscore.keys import KeyMaterial

SITES = ("Takengon", "Tegal", "Cimahi", "Tarutung", "Pematang Siantar")


def cycle_config(cycle: float) -> dict[str, float | int]:
    """Board settings for sampling every ``cycle`` seconds on one machine: health every fifth
    cycle, a short CoAP timeout, retries and watchdog scaled to the cycle."""
    return {
        "interval_s": cycle,
        "health_every": 5,
        "coap_ack_timeout_ms": 1000,
        "retry_max_s": max(2 * cycle, 5.0),
        "watchdog_ms": int(max(30.0, 10 * cycle) * 1000),
    }


def plan_fleet(
    count: int,
    seed: int = 1,
    config: Mapping[str, Any] | None = None,
    *,
    sites: Sequence[str] = SITES,
) -> list[BoardSpec]:
    """Spread ``count`` boards over ``sites`` (the programme's, by default) and the node
    kinds, reproducibly."""
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        site = sites[i % len(sites)]
        kind = KINDS[(i // len(sites)) % len(KINDS)]
        code = profiles.site_code(site).lower()
        specs.append(
            BoardSpec(
                board_id=f"{code}-{kind}-{i + 1:04d}",
                kind=kind,
                site=site,
                seed=rng.randrange(1 << 30),
                config=dict(config or {}),
            )
        )
    return specs


class Fleet:
    """Many boards in this process's event loop, pointed at one gateway."""

    def __init__(
        self,
        specs: list[BoardSpec],
        state_dir: Path,
        gateway: tuple[str, int],
        *,
        echo: Callable[[str, str], None] | None = None,
        engine: str = "cpython",
        serial: bool = False,
        rfc2217: bool = False,
        blank: bool = False,
    ) -> None:
        runner_class = runner_for(engine)
        self.gateway = gateway
        self.runners = [
            runner_class(
                spec,
                state_dir / "boards" / spec.board_id,
                gateway,
                echo=functools.partial(echo, spec.board_id) if echo else None,
                serial=serial,
                rfc2217=rfc2217,
                blank=blank,
            )
            for spec in specs
        ]

    def provision_oscore(self, keys: Mapping[str, KeyMaterial]) -> list[str]:
        """Write ``/oscore.json`` (``provision_oscore``) on every board that ``keys`` (board id
        -> key material, the gateway's view of it) names, as provisioning does before a
        board boots: those boards then speak OSCORE, the others plain CoAP. Their sequence
        stores stay: a board provisioned again with the same keys goes on from its own.
        Returns the board ids provisioned."""
        done = []
        for runner in self.runners:
            material = keys.get(runner.spec.board_id)
            if material is not None:
                flash = Flash(runner.root / "flash")
                provision_oscore(
                    flash, sid=material.sid, secret=material.secret, salt=material.salt
                )
                done.append(runner.spec.board_id)
        return done

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.runners))

    def online(self, within_s: float) -> int:
        """Boards whose last acknowledgement from the gateway is at most ``within_s`` old."""
        now = time.monotonic()
        return sum(1 for r in self.runners if now - r.record.last_ack <= within_s)

    def answered(self) -> bool:
        """Whether the gateway ever acknowledged anything to any board."""
        return any(r.record.last_ack for r in self.runners)

    def sampled(self) -> int:
        """Samples taken (one per board per cycle), over every board."""
        return sum(len(r.record.samples) for r in self.runners)

    def sampled_readings(self) -> int:
        """Readings in those samples (one per quantity measured)."""
        return sum(n for r in self.runners for _, n in r.record.samples.values())

    def buffered(self) -> int:
        """Samples still in the boards' flash, not yet acknowledged by the gateway."""
        return sum(len(_unacked(r.record.samples, r.record.acked_through)) for r in self.runners)

    def buffered_readings(self) -> int:
        """Readings in those samples."""
        return sum(
            n
            for r in self.runners
            for _, n in _unacked(r.record.samples, r.record.acked_through).values()
        )


def _unacked(samples: dict[int, tuple[int, int]], acked_through: int) -> dict[int, tuple[int, int]]:
    return {seq: s for seq, s in samples.items() if seq > acked_through}
