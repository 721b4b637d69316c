"""The baseline: an aiocoap server whose /readings only answers 2.04 (stores nothing).

``python -m tests.bench.bare_server PORT [KEYS_FILE]``: with a keys file (the gateway's
format, ``gateway.oscore.keys``) the site is wrapped in aiocoap's ``OscoreSiteWrapper`` with
a server-side security context per board of the file (aiocoap's ``FilesystemSecurityContext``,
as the gateway's, in a temporary directory), so it answers protected requests too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

import aiocoap
import aiocoap.resource as resource
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore import FilesystemSecurityContext
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

from gateway.oscore.keys import aiocoap_settings, decode_keys_file


class Readings(resource.Resource):  # type: ignore[misc]
    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=aiocoap.CHANGED)


def oscore_credentials(keys_file: Path, directory: Path) -> CredentialsMap:
    """A server-side security context for each board of ``keys_file``."""
    credentials = CredentialsMap()
    for key in decode_keys_file(keys_file.read_bytes()):
        context_dir = directory / key.board_id
        context_dir.mkdir()
        settings = aiocoap_settings(key.material, side="gateway")
        (context_dir / "settings.json").write_text(json.dumps(settings))
        credentials[f":{key.board_id}"] = FilesystemSecurityContext(str(context_dir))
    return credentials


async def serve(port: int, keys_file: Path | None) -> None:
    site = resource.Site()
    site.add_resource(["readings"], Readings())
    with tempfile.TemporaryDirectory(prefix="simpul-bare-oscore-") as directory:
        served: resource.Site | OscoreSiteWrapper = site
        if keys_file is not None:
            served = OscoreSiteWrapper(site, oscore_credentials(keys_file, Path(directory)))
        await aiocoap.Context.create_server_context(served, bind=("127.0.0.1", port))
        shown = " (OSCORE)" if keys_file is not None else ""
        print(f"bare server listening on coap://127.0.0.1:{port}{shown}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()  # then the contexts' directory is removed


if __name__ == "__main__":
    try:
        keys = Path(sys.argv[2]) if len(sys.argv) > 2 else None
        asyncio.run(serve(int(sys.argv[1]), keys))
    except KeyboardInterrupt:
        sys.exit(0)
