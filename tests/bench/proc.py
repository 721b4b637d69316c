"""What Linux's ``/proc`` says of processes and of the machine, for benchmark figures: a
process session's members, CPU seconds, memory high-water marks and the load average."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hw.engines.mpy.host import cpu_seconds

__all__ = ["cpu_seconds", "loadavg", "machine_busy_s", "session_pids", "status_kb"]

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def session_pids(leader: int) -> list[int]:
    """``leader`` and every process of its session (a daemon's workers), by pid."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = (entry / "stat").read_text()
                # After the command's ")": state, ppid, pgrp, session...
                if int(text[text.rindex(")") + 2 :].split()[3]) == leader:
                    pids.append(int(entry.name))
    return sorted(pids)


def machine_busy_s() -> float:
    """CPU seconds all the machine's cores together spent not idle (nor waiting), since boot."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) * _TICK_S


def status_kb(pid: int, key: str) -> int:
    """A KiB figure of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``: peak RSS); 0 if gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
