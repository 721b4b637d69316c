"""The local channel between the control process and the daemon's GPIO (``<state_dir>/pi.sock``).

The daemon owns the pins (a GPIO line has one owner, and the button's long press must stop
the daemon itself); the control process is where the fleet's commands arrive. One request
per connection, one JSON object per line each way::

    {"op": "status"}                                   -> {"ok": true, "result": {...}}
    {"op": "power_cycle" | "bootloader", "board": ID}  -> {"ok": true, "result": {...}}
                                                       -> {"ok": false, "error": "..."}

The socket is the daemon's own (mode 0600 in the state directory); a request that does not
parse is answered with an error, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from gateway.codec import strict_json
from gateway.errors import PiUnavailable

SOCKET_NAME: Final = "pi.sock"
MAX_LINE: Final = 64 * 1024
#: Seconds a request may take: the longest line sequence is well under one.
TIMEOUT_S: Final = 10.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


class ChannelServer:
    """The daemon's end: answers each request with ``handle(request)``."""

    def __init__(self, path: Path, handle: Handler) -> None:
        self.path = path
        self._handle = handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a daemon that was killed
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_LINE
        )
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
            answer = await self._answer(line)
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, ValueError):
            pass  # the client went away or sent too much: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = strict_json.loads(line.strip())
        except ValueError as exc:
            return {"ok": False, "error": f"not a request: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": "not a request: an object with an op is needed"}
        try:
            return await self._handle(request)
        except Exception as exc:  # one request's failure, never the server's
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def ask(path: Path, request: dict[str, Any], *, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """The client's end (blocking): send ``request``, return the daemon's answer.

    Raises :class:`PiUnavailable` when the daemon cannot be reached or does not answer.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n") and len(data) <= MAX_LINE:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise PiUnavailable(f"the gateway's GPIO is not reachable at {path}: {exc}") from None
    try:
        answer = strict_json.loads(data.strip())
    except ValueError as exc:
        raise PiUnavailable(f"the gateway's GPIO answered no JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise PiUnavailable("the gateway's GPIO answered no object")
    return answer


__all__ = ["SOCKET_NAME", "ChannelServer", "ask", "socket_path"]
