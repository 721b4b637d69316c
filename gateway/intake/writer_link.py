"""The gateway's end of the writer process: submit a request, await its committed outcome.

Requests submitted during one turn of the event loop go out in one write; each reply frame
resolves its request's future straight from the socket's read callback (no thread hops).
The link starts the writer process (``spawn``: a fresh interpreter, no copied event loop),
restarts it if it dies (requests in hand then get 5.03 and the boards retry), and on stop
half-closes the socket so the writer commits and answers everything it already has.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import socket
from collections.abc import Callable, Mapping
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from gateway.config import LimitsConfig
from gateway.errors import StoreUnavailable
from gateway.intake import writer
from gateway.intake.requests import Counters
from gateway.processes import child_main
from gateway.store.writer import SequenceRange, SubmitResult

log = logging.getLogger(__name__)

#: How long a stop waits for the writer to commit and exit before it is killed.
_STOP_TIMEOUT_S: Final = 10.0
_RESTART_DELAY_S: Final = 0.5
_START_TIMEOUT_S: Final = 30.0
_SOCKET_BUFFER: Final = 4 << 20


class _Replies(asyncio.Protocol):
    def __init__(self, link: WriterLink) -> None:
        self._link = link
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        replies, used = writer.decode_replies(self._buffer)
        del self._buffer[:used]
        self._link._resolve(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._lost()


class WriterLink:
    """Runs the writer process and carries requests to it.

    ``before_commit`` is handed to the writer process (so it must pickle); it is called
    there right before each COMMIT (a test hook; see :class:`gateway.store.schema.StoreWriter`).
    """

    def __init__(
        self,
        db_path: Path,
        *,
        synchronous: str,
        limits: LimitsConfig,
        counters: Counters,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self._args = (db_path, synchronous, limits, before_commit)
        self.counters = counters
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: BaseProcess | None = None
        self._transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[SubmitResult]] = {}
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        self._next_id = 0
        self._accepting = False
        self._stopping = False
        self._restart: asyncio.Task[None] | None = None
        self.restarts = 0

    async def start(self) -> None:
        """Start the writer process and connect to it."""
        self._loop = asyncio.get_running_loop()
        await self._spawn()
        self._accepting = True

    async def _spawn(self) -> None:
        assert self._loop is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        process = multiprocessing.get_context("spawn").Process(
            target=child_main,
            args=(writer.serve, theirs, *self._args),
            name="simpul-writer",
            daemon=True,
        )
        process.start()
        theirs.close()
        self._process = process
        self._ready = self._loop.create_future()
        self._closed = self._loop.create_future()
        transport, _ = await self._loop.create_connection(lambda: _Replies(self), sock=ours)
        assert isinstance(transport, asyncio.Transport)
        try:
            # Until the writer has the database open, a request would wait long enough for
            # boards to see an empty ACK; so the server binds only once it is ready.
            await asyncio.wait_for(asyncio.shield(self._ready), _START_TIMEOUT_S)
        except TimeoutError:
            transport.abort()
        if self._closed.done() or not self._ready.done():
            raise StoreUnavailable(f"store writer did not start (exit code {process.exitcode})")
        self._transport = transport
        self._schedule_flush()

    # -- submitting --------------------------------------------------------------------

    async def submit_readings(
        self,
        payload: bytes,
        content_format: int,
        *,
        seq: SequenceRange | None,
        address: str | None,
        received_ms: int,
        board: str | None = None,
    ) -> SubmitResult:
        """Decode and store a SenML pack (duplicates ignored); returns after COMMIT.

        ``board`` is the board whose OSCORE keys protected the request: a pack naming
        another is refused. Raises the :class:`gateway.errors.GatewayError` the writer found
        (bad payload, board mismatch...).
        """
        return await self._submit(
            writer.KIND_READINGS, payload, content_format, received_ms, seq, address, board
        )

    async def submit_health(
        self, board_id: str, health: Mapping[str, Any], *, address: str | None, received_ms: int
    ) -> None:
        """Record a board's health report in the registry; returns after COMMIT."""
        payload = f"{board_id}\n{json.dumps(health)}".encode()
        await self._submit(writer.KIND_HEALTH, payload, 0, received_ms, None, address)

    async def ping(self, timeout_s: float) -> bool:
        """Whether the writer process answers within ``timeout_s`` (after what it holds).

        A writer being restarted answers once it is back; one that hangs never does.
        """
        if not self._accepting:
            return False
        future = self._submit(writer.KIND_PING, b"", 0, 0, None, None)
        try:
            await asyncio.wait_for(future, timeout_s)
        except (TimeoutError, StoreUnavailable):
            return False
        return True

    def _submit(
        self,
        kind: int,
        payload: bytes,
        content_format: int,
        received_ms: int,
        seq: SequenceRange | None,
        address: str | None,
        board: str | None = None,
    ) -> asyncio.Future[SubmitResult]:
        if not self._accepting or self._loop is None:
            raise StoreUnavailable("store is not accepting writes (gateway stopping)")
        self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
        future: asyncio.Future[SubmitResult] = self._loop.create_future()
        self._pending[request_id] = future
        self._outgoing.append(
            writer.encode_request(
                request_id,
                kind,
                payload,
                content_format=content_format,
                received_ms=received_ms,
                seq=seq,
                address=address,
                board=board,
            )
        )
        self._schedule_flush()
        return future

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._outgoing and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._transport is None or not self._outgoing:
            return  # not connected (yet, or again): sent once the writer is back
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        self._transport.write(data)

    def _resolve(self, replies: list[writer.Reply]) -> None:
        counters, pending = self.counters, self._pending
        for reply in replies:
            if reply.request_id == writer.READY_ID:
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                continue
            future = pending.pop(reply.request_id, None)
            if reply.error is None:
                counters.readings_stored += reply.stored
                counters.duplicates += reply.duplicates
            if future is None or future.done():
                continue  # the requester gave up (cancelled); the write stands regardless
            if reply.error is not None:
                future.set_exception(reply.error)
            else:
                future.set_result(SubmitResult(reply.stored, reply.duplicates))

    # -- the writer process's life -----------------------------------------------------

    def _lost(self) -> None:
        """The writer closed its end: after a stop that is the end; otherwise it died."""
        self._transport = None
        for waiter in (self._closed, self._ready):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        lost, self._pending = self._pending, {}
        self._outgoing.clear()  # their futures fail below
        for future in lost.values():
            if not future.done():
                future.set_exception(StoreUnavailable("store writer stopped; retry later"))
        restarting = self._restart is not None and not self._restart.done()
        if self._accepting and not self._stopping and not restarting and self._loop is not None:
            self._restart = self._loop.create_task(self._respawn(), name="writer-restart")

    async def _respawn(self) -> None:
        while not self._stopping:
            process = self._process
            if process is not None:
                await asyncio.to_thread(process.join, _STOP_TIMEOUT_S)
                log.warning("store writer exited (code %s); restarting it", process.exitcode)
            self.restarts += 1
            await asyncio.sleep(_RESTART_DELAY_S)
            try:
                await self._spawn()
            except StoreUnavailable:
                continue
            return

    async def stop(self) -> None:
        """Refuse new requests; let the writer commit and answer what it has; wait for it."""
        self._accepting = False
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
            await asyncio.gather(self._restart, return_exceptions=True)
        self._flush()
        if self._transport is not None and self._closed is not None:
            self._transport.write_eof()  # the writer reads to the end, commits, answers, exits
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), _STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("store writer did not finish in %.0f s", _STOP_TIMEOUT_S)
                self._transport.abort()
        process, self._process = self._process, None
        if process is not None:
            await asyncio.to_thread(process.join, _STOP_TIMEOUT_S)
            if process.exitcode is None:
                process.kill()
                await asyncio.to_thread(process.join)
