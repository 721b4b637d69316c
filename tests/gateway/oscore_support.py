"""OSCORE for gateway tests: enrolled boards' keys and aiocoap's OSCORE client for them."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiocoap import Context, Message
from aiocoap.oscore import FilesystemSecurityContext, NotAProtectedMessage

from gateway.oscore.keys import BoardKey, aiocoap_settings, encode_keys_file, generate


def board_key(board_id: str, sid: bytes, secret: bytes | None = None) -> BoardKey:
    """Key material for ``board_id`` (a fixed secret derived from its sid unless given)."""
    return generate(board_id, sid, secret=secret or sid.ljust(32, b"k"))


def write_keys_file(path: Path, keys: list[BoardKey]) -> Path:
    path.write_bytes(encode_keys_file(keys))
    return path


def board_context(directory: Path, key: BoardKey) -> FilesystemSecurityContext:
    """The board's side of ``key``: aiocoap's persisted context, sender ``sid``."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = aiocoap_settings(key.material, side="board")
    (directory / "settings.json").write_text(json.dumps(settings))
    return FilesystemSecurityContext(str(directory))


@asynccontextmanager
async def oscore_client(
    directory: Path, key: BoardKey, host: str, port: int
) -> AsyncIterator[Context]:
    """An aiocoap client that protects every request to ``host:port`` with ``key``."""
    context = await Context.create_client_context()
    secctx = board_context(directory, key)
    context.client_credentials[f"coap://{host}:{port}/*"] = secctx
    try:
        yield context
    finally:
        await context.shutdown()
        secctx._destroy()


async def answer_code(client: Context, request: Message) -> str:
    """The code of the gateway's answer, protected or not (aiocoap's OSCORE client raises on
    an unprotected answer, carrying it)."""
    try:
        response = await client.request(request).response
    except NotAProtectedMessage as exc:
        return str(exc.plain_message.code)
    return str(response.code)


class UdpTap:
    """A UDP relay between one client and a gateway that keeps every datagram the client
    sends (a captured packet to replay later) and every one the gateway answers."""

    def __init__(self, gateway: tuple[str, int]) -> None:
        self.gateway = gateway
        self.captured: list[bytes] = []
        self.answers: list[bytes] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UdpTap:
        self._task = asyncio.create_task(self._relay())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sock.close()

    async def _relay(self) -> None:
        loop = asyncio.get_running_loop()
        client: tuple[str, int] | None = None
        while True:
            data, addr = await loop.sock_recvfrom(self._sock, 4096)
            if addr[1] == self.gateway[1]:
                self.answers.append(data)
                if client is not None:
                    await loop.sock_sendto(self._sock, data, client)
            else:
                client = addr
                self.captured.append(data)
                await loop.sock_sendto(self._sock, data, self.gateway)


async def send_raw(datagram: bytes, to: tuple[str, int], *, new_mid: bool = True) -> bytes:
    """Send ``datagram`` from a fresh socket (with another message ID unless told, so CoAP
    deduplication does not absorb it) and return the answer."""
    data = bytearray(datagram)
    if new_mid:
        data[2:4] = (int.from_bytes(data[2:4], "big") ^ 0x5A5A).to_bytes(2, "big")
    loop = asyncio.get_running_loop()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    try:
        await loop.sock_sendto(raw, bytes(data), to)
        answer, _ = await asyncio.wait_for(loop.sock_recvfrom(raw, 4096), 5)
    finally:
        raw.close()
    return answer
