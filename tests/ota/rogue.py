"""A hostile gateway for OTA tests: it tells a board a release is due and serves whatever bytes
the test gives it, as the real gateway never would (it refuses to cache such releases).

An aiocoap server on 127.0.0.1 (real UDP)::

    rogue = RogueGateway(hint=9, manifest=forged, files={"app.mpy": Served(data)})
    await rogue.start()          # rogue.address is (host, port) for the board's config
    ...
    rogue.blocks("/ota/9/app.mpy")   # the Block2 numbers the board asked for, in order
    rogue.health[-1]["ota"]          # the board's newest health report
    await rogue.stop()

- ``POST /readings`` and ``POST /health``: 2.04 carrying ``{"ota": hint}`` (CBOR, Content-Format
  60), as gateway/intake/resources.py answers when an update is due;
- ``GET /ota/<hint>/manifest`` and ``GET /ota/<hint>/<name>``: the given bytes block-wise,
  each answer with Block2, ETag and Size2 as ``OtaResource`` sets them; a :class:`Served`
  says how one file is misrepresented (a forged ETag, or endless data);
- with ``echo`` set, a GET without that Echo value gets 4.01 carrying it first (RFC 9175
  §2.4), as the real gateway challenges a host before sending it blocks.

Every request is recorded (:attr:`RogueGateway.requests`), so a test can assert what the
board asked for, and what it never asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import cbor2
from aiocoap.resource import PathCapable, Resource, Site

from tests.support import free_udp_port

#: Block2 size exponent the real gateway serves at most: 2 ** (6 + 4) = 1024-byte blocks.
MAX_SZX = 6
CBOR = 60


@dataclass(frozen=True)
class Served:
    """One file as the rogue serves it.

    ``etag``: what every answer's ETag says; None: the first 8 bytes of the SHA-256 of
    ``data``, as an honest gateway computes it. ``endless``: every block number is answered
    with a full block and more=True: ``data`` first, then filler, without end.
    """

    data: bytes
    etag: bytes | None = None
    endless: bool = False

    def tag(self) -> bytes:
        return self.etag if self.etag is not None else hashlib.sha256(self.data).digest()[:8]

    def block(self, number: int, szx: int) -> tuple[bytes, bool] | None:
        """Block ``number`` and whether more follow; None past the end."""
        size = 1 << (szx + 4)
        start = number * size
        if self.endless:
            chunk = self.data[start : start + size]
            return chunk + b"\xa5" * (size - len(chunk)), True
        if start >= len(self.data) and start > 0:
            return None
        return self.data[start : start + size], start + size < len(self.data)


@dataclass(frozen=True)
class Request:
    """One request the rogue received: its method, path, Block2 number and Echo value."""

    method: str
    path: str
    block: int | None
    echo: bytes | None
    challenged: bool  # answered 4.01 with an Echo, nothing served


@dataclass
class Log:
    """What the board asked of the rogue, and the health reports it sent."""

    requests: list[Request] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)


def _path(request: aiocoap.Message, prefix: tuple[str, ...] = ()) -> str:
    return "/" + "/".join((*prefix, *request.opt.uri_path))


class HintResource(Resource):  # type: ignore[misc]
    """``/readings`` or ``/health``: accepted, with the update hint in the answer."""

    def __init__(self, name: str, hint: int, log: Log) -> None:
        super().__init__()
        self._name = name
        self._payload = cbor2.dumps({"ota": hint})
        self._log = log

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self._log.requests.append(Request("POST", "/" + self._name, None, None, False))
        if self._name == "health":
            report = cbor2.loads(request.payload)
            if isinstance(report, dict):
                self._log.health.append(report)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=self._payload, content_format=CBOR)


class OtaFilesResource(Resource, PathCapable):  # type: ignore[misc]
    """``/ota/<seq>/<name>``: the given bytes, block by block, whatever they are."""

    def __init__(self, seq: int, files: Mapping[str, Served], echo: bytes | None, log: Log) -> None:
        super().__init__()
        self._seq = str(seq)
        self._files = dict(files)
        self._echo = echo
        self._log = log

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False  # blocks are cut here, so endless and forged answers stay possible

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        block2 = request.opt.block2
        szx, number = MAX_SZX, 0
        if block2 is not None:
            szx = min(MAX_SZX, block2.size_exponent)
            number = block2.start >> (szx + 4)
        echo = request.opt.echo
        challenge = self._echo is not None and echo != self._echo
        path = _path(request, ("ota",))
        self._log.requests.append(Request("GET", path, number, echo, challenge))
        if challenge:
            response = aiocoap.Message(code=aiocoap.UNAUTHORIZED)
            response.opt.echo = self._echo
            return response
        parts = request.opt.uri_path
        served = self._files.get(parts[1]) if len(parts) == 2 and parts[0] == self._seq else None
        if served is None:
            return aiocoap.Message(code=aiocoap.NOT_FOUND, payload=f"no {path}".encode())
        cut = served.block(number, szx)
        if cut is None:
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"Block2 past the end")
        payload, more = cut
        response = aiocoap.Message(code=aiocoap.CONTENT, payload=payload)
        response.opt.etag = served.tag()
        response.opt.block2 = (number, more, szx)
        if not served.endless:
            response.opt.size2 = len(served.data)
        return response


def build_site(
    hint: int, manifest: Served, files: Mapping[str, Served], echo: bytes | None, log: Log
) -> Site:
    """The rogue's resource tree: the two hinting resources and ``/ota/...``."""
    site = Site()
    for name in ("readings", "health"):
        site.add_resource((name,), HintResource(name, hint, log))
    served = {**files, "manifest": manifest}
    site.add_resource(("ota",), OtaFilesResource(hint, served, echo, log))
    return site


class RogueGateway:
    """A gateway that hints release ``hint`` and serves ``manifest`` and ``files`` for it.

    ``manifest`` and each of ``files`` are bytes (served honestly, block-wise) or a
    :class:`Served` that says how they are misrepresented. ``echo``: the Echo value every GET
    must carry before it is served (None: no challenge).
    """

    def __init__(
        self,
        hint: int,
        manifest: bytes | Served,
        files: Mapping[str, bytes | Served] | None = None,
        *,
        echo: bytes | None = None,
    ) -> None:
        self.hint = hint
        self.log = Log()
        self._site = build_site(
            hint,
            _served(manifest),
            {name: _served(data) for name, data in (files or {}).items()},
            echo,
            self.log,
        )
        self._port = free_udp_port()
        self._context: aiocoap.Context | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self._port)

    @property
    def requests(self) -> list[Request]:
        return self.log.requests

    @property
    def health(self) -> list[dict[str, Any]]:
        return self.log.health

    async def start(self) -> None:
        self._context = await aiocoap.Context.create_server_context(self._site, bind=self.address)

    async def stop(self) -> None:
        if self._context is not None:
            await self._context.shutdown()
            self._context = None

    async def __aenter__(self) -> RogueGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def gets(self, path: str | None = None) -> list[Request]:
        """The GETs the rogue answered with content or an error (challenges left out)."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and not r.challenged and (path is None or r.path == path)
        ]

    def blocks(self, path: str) -> list[int]:
        """The Block2 numbers the board asked for at ``path`` and got an answer to."""
        return [r.block for r in self.gets(path) if r.block is not None]


def _served(data: bytes | Served) -> Served:
    return data if isinstance(data, Served) else Served(data)
