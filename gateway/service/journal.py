"""Logging for the gateway's processes: to a terminal as before, to the journal with priorities.

systemd connects a service's stderr to the journal and says so in ``$JOURNAL_STREAM``
(``<device>:<inode>`` of that stream). A line that starts with ``<N>`` is stored at syslog
priority N (sd-daemon(3)); the journal stamps each line itself. So when stderr is the
journal stream, every line of a record (a traceback's too) gets its priority and no
timestamp; otherwise lines look as they always did. ``journalctl -u simpul-gateway -p
warning`` then shows warnings and worse.

The daemon's child processes (writer, batcher, uplinks, control) are fresh interpreters
(``spawn``); :func:`configure_child` gives them the same setup, from the level the daemon
left in ``$SIMPUL_LOG_LEVEL``, and the stderr they inherit.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Final, TextIO

#: syslog priorities of Python's levels (sd-daemon.h: SD_ERR "<3>" ... SD_DEBUG "<7>").
PRIORITIES: Final = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
DEBUG_PRIORITY: Final = 7
#: Where the daemon leaves its log level for its child processes.
LEVEL_ENV: Final = "SIMPUL_LOG_LEVEL"
TERMINAL_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def priority(levelno: int) -> int:
    """The syslog priority for a logging level (a custom level takes the next one down)."""
    for level, prio in PRIORITIES:
        if levelno >= level:
            return prio
    return DEBUG_PRIORITY


def is_journal_stream(
    stream: TextIO | None = None, environ: Mapping[str, str] = os.environ
) -> bool:
    """Whether ``stream`` (stderr) is the one systemd connected to the journal."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat((stream or sys.stderr).fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, every line of it prefixed (a traceback stays at its priority)."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def configure(level: int, *, stream: TextIO | None = None) -> bool:
    """Log ``level`` and above to ``stream`` (stderr): with priorities if it is the journal.

    Returns whether it is. Child processes started afterwards inherit the level.
    """
    stream = stream or sys.stderr
    journal = is_journal_stream(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(TERMINAL_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    os.environ[LEVEL_ENV] = logging.getLevelName(level)
    return journal


def configure_child() -> None:
    """In a child process: the daemon's setup, if it made one (its level in the environment)."""
    name = os.environ.get(LEVEL_ENV)
    if name:
        level = logging.getLevelName(name)
        configure(level if isinstance(level, int) else logging.WARNING)


def error_prefix(stream: TextIO | None = None) -> str:
    """``<3>`` for a line written straight to the journal stream; else nothing."""
    return f"<{priority(logging.ERROR)}>" if is_journal_stream(stream) else ""


__all__ = [
    "JournalFormatter",
    "configure",
    "configure_child",
    "error_prefix",
    "is_journal_stream",
    "priority",
]
