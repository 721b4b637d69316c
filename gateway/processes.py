"""How the gateway's child processes (the writer, the batcher, each uplink) run.

* :func:`child_main` starts one: Ctrl-C in a terminal interrupts the whole process group;
  the children leave it to the daemon, which stops them in order (the writer commits what it
  holds, uplinks finish their round) instead of each dying with a traceback. Each logs as
  the daemon does (:func:`gateway.service.journal.configure_child`).
* :func:`hold_lock` keeps one process at a time per job: an exclusive ``flock`` on a file in
  the state directory. A gateway killed with SIGKILL leaves its batcher and uplink processes
  running until they notice; the lock makes the new gateway's processes wait for them, so
  two never sign or send at once. The kernel releases the lock when its holder dies.
* :func:`sleep_unless` waits without missing a stop request.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.service.journal import configure_child


def child_main(target: Callable[..., None], *args: Any) -> None:
    """Run ``target(*args)`` as a child process's main function, deaf to SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_child()
    target(*args)


def hold_lock(path: Path, stop: Callable[[], bool], *, poll_s: float = 0.05) -> int | None:
    """Take an exclusive lock on ``path``, waiting while ``stop()`` is false.

    Returns the locked file descriptor (keep it open for as long as the lock is needed), or
    None if ``stop()`` said so first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if stop():
                os.close(fd)
                return None
            time.sleep(poll_s)


def sleep_unless(stop: Callable[[], bool], seconds: float, *, step_s: float = 0.05) -> None:
    """Sleep ``seconds``, or less if ``stop()`` becomes true meanwhile."""
    deadline = time.monotonic() + seconds
    while not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(step_s, left))
