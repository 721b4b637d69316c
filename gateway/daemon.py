"""The gateway daemon: the store, the CoAP server and the uplinks, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Callable
from typing import Any

import aiocoap

from gateway.config import GatewayConfig
from gateway.errors import BindError, StateDirError
from gateway.resources import Admission, build_site
from gateway.store import Counters, Store, now_ms
from gateway.uplink_file import UPLINK_NAME as FILE_UPLINK
from gateway.uplink_file import FileUplink

log = logging.getLogger(__name__)

#: How long a stop waits for requests in hand to be committed and answered.
_DRAIN_TIMEOUT_S = 5.0


class Gateway:
    """One gateway: ``await start()``, serve, ``await stop()``.

    ``before_commit`` is passed to the store (a test hook; see :class:`Store`).
    """

    def __init__(
        self, config: GatewayConfig, *, before_commit: Callable[[], None] | None = None
    ) -> None:
        self.config = config
        self.counters = Counters()
        self.store = Store(
            config.db_path,
            synchronous=config.store.synchronous,
            counters=self.counters,
            before_commit=before_commit,
        )
        self.admission = Admission()
        self._context: aiocoap.Context | None = None
        self._bound: tuple[str, int] | None = None
        self._uplinks: dict[str, FileUplink] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Open the store, bind the CoAP server, start the uplinks.

        Raises :class:`StateDirError`, :class:`StoreCorrupt` or :class:`BindError`.
        """
        self._prepare_state_dir()
        await self.store.open()
        try:
            await self._bind()
            if self.config.uplinks.file.enabled:
                outbox = await self.store.outbox(FILE_UPLINK)
                uplink = FileUplink(
                    outbox,
                    self.config.file_uplink_dir,
                    gateway_id=self.config.gateway_id,
                    site=self.config.site,
                    batch_size=self.config.uplinks.file.batch_size,
                    linger_s=self.config.uplinks.file.linger_ms / 1000,
                )
                self._uplinks[FILE_UPLINK] = uplink
                self._tasks.append(asyncio.create_task(uplink.run(), name="uplink-file"))
        except BaseException:
            await self.stop()
            raise

    def _prepare_state_dir(self) -> None:
        state_dir = self.config.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirError(f"cannot create state dir {state_dir}: {exc.strerror}") from None
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise StateDirError(f"state dir {state_dir} is not writable")

    async def _bind(self) -> None:
        host, port = self.config.bind.host, self.config.bind.port
        site = build_site(self.store, self.config.limits, self.counters, self.admission)
        try:
            self._context = await aiocoap.Context.create_server_context(
                site, bind=(host, port), transports=["udp6"]
            )
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise BindError(f"cannot listen on {host}:{port}: {reason or exc}") from None
        self._bound = (host, _bound_port(self._context) or port)

    @property
    def bound_address(self) -> tuple[str, int]:
        """(host, port) the server listens on; the real port when port 0 was asked for."""
        if self._bound is None:
            raise RuntimeError("gateway is not started")
        return self._bound

    @property
    def uplinks(self) -> dict[str, FileUplink]:
        """Running uplinks by name."""
        return dict(self._uplinks)

    def stats(self) -> dict[str, Any]:
        """A snapshot for operators and tests (this process's counters, registry counts)."""
        online_since = now_ms() - self.config.online_window_s * 1000
        seen, online = self.store.board_counts(online_since)
        return {
            "gateway_id": self.config.gateway_id,
            "readings_stored": self.counters.readings_stored,
            "duplicates": self.counters.duplicates,
            "refused": dict(self.counters.refused),
            "boards_seen": seen,
            "boards_online": online,
            "outbox_head": self.store.head_id,
            "uplinks": {
                name: {"delivered_id": box.delivered_id, "backlog": box.backlog}
                for name, box in self.store.outboxes.items()
            },
        }

    async def stop(self) -> None:
        """Stop accepting requests, stop the uplinks, let the writer commit, close the db."""
        # Requests in hand get their answer before the socket closes.
        await self.admission.close(_DRAIN_TIMEOUT_S)
        if self._context is not None:
            await self._context.shutdown()
            self._context = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.store.close()


def _bound_port(context: aiocoap.Context) -> int | None:
    """The UDP port aiocoap's socket actually got (aiocoap has no public accessor)."""
    for interface in context.request_interfaces:
        transport = getattr(
            getattr(getattr(interface, "token_interface", None), "message_interface", None),
            "transport",
            None,
        )
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            port: int = sock.getsockname()[1]
            return port
    return None
