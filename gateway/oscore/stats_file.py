"""``<state_dir>/security.json``: what the CoAP process last counted of who talks to it, for
the control process to put in the gateway's state (its one writer and its one reader).

The CoAP process keeps its refusal counters in memory; it writes them here (atomically: a
temporary file renamed over the old) whenever they change, at most once per
``security.reload_interval_ms``. The control process reads the file for each state message,
so the fleet sees a gateway in lab mode (``plain_coap``) and what OSCORE refused, by reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

NAME: Final = "security.json"
#: The file is a few hundred bytes; a larger one is not this file.
_MAX_BYTES: Final = 64 * 1024


def write(state_dir: Path, stats: dict[str, Any]) -> None:
    """Replace the file with ``stats`` (JSON)."""
    path = state_dir / NAME
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(stats, sort_keys=True))
    os.replace(temporary, path)


def read(state_dir: Path) -> dict[str, Any] | None:
    """The last stats written, or None (none yet, or not readable as such)."""
    try:
        with (state_dir / NAME).open("rb") as f:
            data = f.read(_MAX_BYTES + 1)
        body = json.loads(data) if len(data) <= _MAX_BYTES else None
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None
