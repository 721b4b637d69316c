"""Supervision of the uplink processes: started, restarted when they die, stopped in order.

An uplink needs nothing from the CoAP server but the database file, so it runs apart from
it (``spawn``: a fresh interpreter) and never competes with it for the interpreter lock. It
opens its own connection, polls the outbox for new items, delivers them, and advances its
durable cursor in its own short transaction, at a lower CPU priority than the server
(``uplinks.nice``). :class:`UplinkSupervisor` starts one process per name that
:func:`gateway.uplinks.registry.enabled_processes` gives, restarts one that dies (with a log
line), and stops them on shutdown; a process whose gateway was killed notices and exits by
itself.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from multiprocessing.process import BaseProcess
from typing import Final

from gateway.config import GatewayConfig
from gateway.processes import child_main
from gateway.uplinks.registry import PROCESS_MAINS, enabled_processes

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S: Final = 5.0
_RESTART_MIN_S: Final = 0.5
_RESTART_MAX_S: Final = 30.0
#: A process that ran at least this long before dying restarts after the shortest delay.
_HEALTHY_RUN_S: Final = 10.0


class UplinkSupervisor:
    """Starts, watches and stops one process per enabled uplink."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.names = enabled_processes(config)
        self.restarts: dict[str, int] = dict.fromkeys(self.names, 0)
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._processes: dict[str, BaseProcess] = {}
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name in self.names:
            self._start(name)
            self._watchers.append(asyncio.create_task(self._watch(name), name=f"uplink-{name}"))

    def _start(self, name: str) -> BaseProcess:
        process = self._context.Process(
            target=child_main,
            args=(PROCESS_MAINS[name], self.config, self._stop),
            name=f"simpul-uplink-{name}",
            daemon=True,
        )
        process.start()
        self._processes[name] = process
        return process

    async def _watch(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        delay = _RESTART_MIN_S
        while not self._stop.is_set():
            process = self._processes[name]
            started = loop.time()
            await _exited(process)
            if self._stop.is_set():
                return
            if loop.time() - started >= _HEALTHY_RUN_S:
                delay = _RESTART_MIN_S
            log.warning(
                "uplink %s exited (code %s); restarting in %.1f s", name, process.exitcode, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESTART_MAX_S)
            if not self._stop.is_set():
                self.restarts[name] += 1
                self._start(name)

    async def stop(self) -> None:
        """Ask every uplink to finish its batch and exit; kill one that does not."""
        self._stop.set()
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers.clear()
        for process in self._processes.values():
            try:
                await asyncio.wait_for(_exited(process), _STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
            await asyncio.to_thread(process.join)
        self._processes.clear()


async def _exited(process: BaseProcess) -> None:
    """Wait, without a thread, until ``process`` has exited."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(process.sentinel, on_exit)
    try:
        await done
    finally:
        loop.remove_reader(process.sentinel)
