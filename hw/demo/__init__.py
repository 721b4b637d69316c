"""``simpul demo``: the whole system on this machine, and the operator's console on top.

:mod:`hw.demo.city` builds and runs it (a private Mosquitto, fleet keys and fleet.db, one
gateway per site, ``simpul fleet serve``, emulated boards, a consumer of the batches);
with a console (the default on a terminal) the fleet console shows it live over that
fleet.db, else :mod:`hw.demo.summary` prints progress lines and, at the end, where the
readings got to per site: stored by the gateways, delivered upstream, recorded by the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Final, TextIO

from hw.broker import MosquittoMissing, find_mosquitto
from hw.demo.city import DEMO_OPERATOR, DemoCity
from hw.demo.summary import progress_line, site_table, summary

#: Seconds between the headless demo's progress lines.
PROGRESS_EVERY_S: Final = 10.0
#: How long, once the boards stop, the demo waits for what they sent to reach the fleet.
CATCH_UP_S: Final = 10.0


async def run(
    boards: int,
    sites: int,
    cycle: float,
    duration: float | None,
    state_dir: Path,
    out: TextIO,
    *,
    console: bool,
) -> int:
    """Run the demo until Ctrl-C, SIGTERM, the console's ``q`` or ``duration``; exit code."""
    try:
        find_mosquitto()
    except MosquittoMissing as exc:
        print(f"simpul demo: {exc}", file=out, flush=True)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    city = DemoCity(state_dir, boards, sites, cycle)
    started = time.monotonic()
    try:
        await city.start()
        print(_header(city), file=out, flush=True)
        if console and not stop.is_set():
            await _console(city, stop, duration)
        elif not stop.is_set():
            await _headless(city, stop, duration, out, started)
        await city.stop_boards()
        await _catch_up(city)
        figures = await asyncio.to_thread(city.figures)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await city.stop()
    elapsed = time.monotonic() - started
    try:
        print(site_table(figures), file=out)
        print(summary(elapsed, figures), file=out)
        for site in city.sites:
            gateway_dir = city.gateway_dir(site)
            batches = gateway_dir / "batches" / "batches.cbor"
            if batches.exists():
                print(
                    f"simpul demo: {site.gateway_id}'s signed batches are in {batches}; check them"
                    f" with: simpul verify --report --key {gateway_dir / 'keys' / 'gateway.pub'}"
                    f" --file {batches}",
                    file=out,
                )
        out.flush()
    except OSError:
        pass  # the terminal hung up (the demo stopped on SIGHUP): nobody is left to read it
    return 0


def _header(city: DemoCity) -> str:
    gateways = ", ".join(site.gateway_id for site in city.sites)
    return (
        f"simpul demo: {len(city.boards)} boards at {len(city.sites)} sites; gateways "
        f"{gateways}; broker mqtt://{city.broker.address}; fleet {city.fleet_dir}; logs "
        f"{city.logs}"
    )


async def _headless(
    city: DemoCity, stop: asyncio.Event, duration: float | None, out: TextIO, started: float
) -> None:
    deadline = None if duration is None else started + duration
    next_line = started + PROGRESS_EVERY_S
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
        if time.monotonic() >= next_line:
            next_line += PROGRESS_EVERY_S
            figures = await asyncio.to_thread(city.figures)
            print(progress_line(time.monotonic() - started, figures), file=out, flush=True)


async def _console(city: DemoCity, stop: asyncio.Event, duration: float | None) -> None:
    """The fleet console over the demo's fleet.db until ``q`` (or a signal, or ``duration``).

    It runs in this event loop beside the boards; its fleet engine is the demo's
    ``simpul fleet serve`` (which holds the serve lock), and its commands go to the broker.
    """
    from fleet.console.app import ConsoleApp
    from fleet.console.backend import StoreBackend

    backend = StoreBackend(city.fleet_dir, operator=DEMO_OPERATOR, broker=city.broker_settings)
    app = ConsoleApp(backend, refresh_s=1.0)
    app.sub_title = f"simpul demo: {len(city.boards)} boards at {len(city.sites)} sites"

    async def close_when_stopped() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        app.exit()

    closer = asyncio.create_task(close_when_stopped())
    try:
        await app.run_async()
    finally:
        closer.cancel()


async def _catch_up(city: DemoCity) -> None:
    """Give what the gateways stored the time to be batched, delivered and recorded."""
    deadline = time.monotonic() + CATCH_UP_S
    while time.monotonic() < deadline:
        figures = await asyncio.to_thread(city.figures)
        if all(f.stored <= f.delivered <= f.recorded for f in figures):
            return
        await asyncio.sleep(0.5)
