"""The baseline: an aiocoap server whose /readings only answers 2.04 (stores nothing)."""

from __future__ import annotations

import asyncio
import sys

import aiocoap
import aiocoap.resource as resource


class Readings(resource.Resource):  # type: ignore[misc]
    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=aiocoap.CHANGED)


async def serve(port: int) -> None:
    site = resource.Site()
    site.add_resource(["readings"], Readings())
    await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
    print(f"bare server listening on coap://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(serve(int(sys.argv[1])))
    except KeyboardInterrupt:
        sys.exit(0)
