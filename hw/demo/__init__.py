"""``simpul demo``: a gateway and emulated boards on this machine, readings flowing upstream.

The gateway runs in this process with its file uplink; what the demo shows as *delivered
upstream* is read back from that uplink's JSON Lines, as a consumer would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.config import load_config
from gateway.daemon import Gateway
from hw.engines.fleet import SITES, Fleet, cycle_config, plan_fleet

# What the live view shows per site, in this order: (reading name, label, unit).
_SHOWN = (
    ("pm2_5", "PM2.5", "µg/m³"),
    ("temperature", "", "°C"),
    ("level", "river", "m"),
    ("fill", "bins", "%"),
)


@dataclass
class Upstream:
    """Reads the file uplink's JSON Lines incrementally, as a consumer would."""

    directory: Path
    lines: int = 0
    latest: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    _offsets: dict[Path, int] = field(default_factory=dict)

    def poll(self, site_of: dict[str, str]) -> None:
        for path in sorted(self.directory.glob("*.jsonl")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            self._offsets[path] = offset + end
            for raw in chunk[:end].splitlines():
                self.lines += 1
                line = json.loads(raw)
                site = site_of.get(line["board"], "?")
                if isinstance(line["value"], int | float):
                    self.latest[site][line["name"]] = line["value"]


def _view(
    fleet: Fleet,
    site_of: dict[str, str],
    upstream: Upstream,
    stats: dict[str, Any],
    header: str,
    elapsed: float,
    cycle: float,
) -> Table:
    table = Table(title=header, title_justify="left", expand=False)
    table.add_column("site")
    table.add_column("boards", justify="right")
    table.add_column("online", justify="right")
    table.add_column("latest upstream")
    window = 3 * cycle + 5
    now = time.monotonic()
    for site in SITES:
        runners = [r for r in fleet.runners if site_of[r.spec.board_id] == site]
        if not runners:
            continue
        online = sum(1 for r in runners if now - r.record.last_ack <= window)
        latest = upstream.latest.get(site, {})
        shown = " · ".join(
            f"{label + ' ' if label else ''}{latest[name]:g} {unit}"
            for name, label, unit in _SHOWN
            if name in latest
        )
        table.add_row(site, str(len(runners)), str(online), shown)
    table.caption = (
        f"readings: sampled {fleet.sampled_readings()} · stored "
        f"{stats.get('readings_stored', 0)} · delivered upstream {upstream.lines} · buffered "
        f"on boards {fleet.buffered_readings()} (in {_count(fleet.buffered(), 'sample')})"
        f" · {elapsed:.0f} s"
    )
    table.caption_justify = "left"
    return table


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def summary(
    boards: int, elapsed: float, fleet: Fleet, stored: int, delivered: int, upstream_dir: Path
) -> str:
    """The demo's last line. Every figure counts readings (one per quantity measured); the
    samples still buffered (one per board per cycle, several readings each) are named as such."""
    return (
        f"simpul demo: {boards} boards for {elapsed:.0f} s: {fleet.sampled_readings()} readings "
        f"sampled, {stored} stored by the gateway, {delivered} delivered upstream, "
        f"{_count(fleet.buffered_readings(), 'reading')} still buffered on boards "
        f"(in {_count(fleet.buffered(), 'sample')}; they go when the boards run again). "
        f"Upstream: {upstream_dir}"
    )


async def run(
    boards: int, cycle: float, duration: float | None, state_dir: Path, out: TextIO
) -> int:
    config = load_config(
        overrides={
            "gateway_id": "demo-gw",
            "site": "Command centre",
            "bind": {"host": "127.0.0.1", "port": 0},
            "state_dir": str(state_dir / "gateway"),
        }
    )
    gateway = Gateway(config)
    await gateway.start()
    host, port = gateway.bound_address
    specs = plan_fleet(boards, 1, cycle_config(cycle))
    site_of = {s.board_id: s.site for s in specs}
    fleet = Fleet(specs, state_dir, (host, port))
    upstream = Upstream(config.file_uplink_dir)
    header = (
        f"simpul demo: gateway {config.gateway_id} on coap://{host}:{port}, "
        f"{boards} boards, state {state_dir}"
    )
    console = Console(file=out)
    live = out.isatty() and duration is None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    fleet.start()
    if not live:
        print(header, file=out, flush=True)
    try:
        if live:
            with Live(console=console, refresh_per_second=2) as view:
                while not stop.is_set():
                    await asyncio.to_thread(upstream.poll, site_of)
                    elapsed = time.monotonic() - started
                    view.update(
                        _view(fleet, site_of, upstream, gateway.stats(), header, elapsed, cycle)
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
        else:
            deadline = started + duration if duration else None
            next_line = started + 10
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                if time.monotonic() >= next_line:
                    next_line += 10
                    await asyncio.to_thread(upstream.poll, site_of)
                    print(
                        f"{time.monotonic() - started:4.0f} s  boards online "
                        f"{fleet.online(3 * cycle + 5)}/{boards}  readings stored "
                        f"{gateway.stats().get('readings_stored', 0)}  delivered upstream "
                        f"{upstream.lines}",
                        file=out,
                        flush=True,
                    )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await fleet.stop()
        # Let the uplink catch up with what was stored before the gateway stops.
        for _ in range(20):
            await asyncio.to_thread(upstream.poll, site_of)
            if upstream.lines >= gateway.stats().get("readings_stored", 0):
                break
            await asyncio.sleep(0.25)
        stats = gateway.stats()
        await gateway.stop()
        await asyncio.to_thread(upstream.poll, site_of)
    elapsed = time.monotonic() - started
    stored = stats.get("readings_stored", 0)
    print(
        summary(boards, elapsed, fleet, stored, upstream.lines, config.file_uplink_dir),
        file=out,
        flush=True,
    )
    batches = config.batch_file_dir / "batches.cbor"
    if batches.exists():
        print(
            f"simpul demo: {stats['batches']['newest_seq']} signed batches in {batches}; check"
            f" them with: simpul verify --report --key {config.state_dir / 'keys' / 'gateway.pub'}"
            f" --file {batches}",
            file=out,
            flush=True,
        )
    return 0
