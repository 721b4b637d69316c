"""How the gateway's child processes (the writer, each uplink) begin.

Ctrl-C in a terminal interrupts the whole process group; the children leave it to the
daemon, which stops them in order (the writer commits what it holds, uplinks finish their
round) instead of each dying with a traceback.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any


def child_main(target: Callable[..., None], *args: Any) -> None:
    """Run ``target(*args)`` as a child process's main function, deaf to SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    target(*args)
