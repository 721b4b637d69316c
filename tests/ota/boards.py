"""What a test reads of an emulated board during an update: its console's update lines,
its ``/data/ota.json`` and ``/slots.json``, as a technician's tool would read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hw.engines.base import BoardRunner
from tests.support import iter_console


def lines(runner: BoardRunner, prefix: str = "U ") -> list[str]:
    return [line for line in iter_console(runner.root) if line.startswith(prefix)]


def banners(runner: BoardRunner) -> list[str]:
    """The start line of each boot: ``simpul <version> board <id> kind <k> slot <s> ...``."""
    return lines(runner, "simpul ")


def said(runner: BoardRunner, text: str) -> bool:
    return any(text in line for line in lines(runner))


def flash_json(runner: BoardRunner, path: str) -> dict[str, Any] | None:
    file = runner.root / "flash" / path.lstrip("/")
    try:
        value = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def ota_state(runner: BoardRunner) -> dict[str, Any]:
    return flash_json(runner, "/data/ota.json") or {}


def slot_files(runner: BoardRunner, slot: str) -> dict[str, bytes]:
    directory: Path = runner.root / "flash" / slot
    if not directory.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}
