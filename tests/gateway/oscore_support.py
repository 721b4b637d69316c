"""OSCORE for gateway tests: enrolled boards' keys and aiocoap's OSCORE client for them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiocoap import Context, Message
from aiocoap.oscore import FilesystemSecurityContext, NotAProtectedMessage

from gateway.oscore.keys import BoardKey, encode_keys_file, generate


def board_key(board_id: str, sid: bytes, secret: bytes | None = None) -> BoardKey:
    """Key material for ``board_id`` (a fixed secret derived from its sid unless given)."""
    return generate(board_id, sid, secret=secret or sid.ljust(32, b"k"))


def write_keys_file(path: Path, keys: list[BoardKey]) -> Path:
    path.write_bytes(encode_keys_file(keys))
    return path


def board_context(directory: Path, key: BoardKey) -> FilesystemSecurityContext:
    """The board's side of ``key``: aiocoap's persisted context, sender ``sid``."""
    directory.mkdir(parents=True, exist_ok=True)
    material = key.material
    settings = {
        "sender-id_hex": material.sid.hex(),
        "recipient-id_hex": material.rid.hex(),
        "secret_hex": material.secret.hex(),
        "salt_hex": material.salt.hex(),
    }
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
