"""The emulated ESP32s: two engines for the same, unchanged firmware files.

- ``base.py``: the board runner both share (power-on, the firmware's run, resets, the REPL's
  requests); ``chip.py``: what every emulated chip has (faults, RTC, console, restarts);
  ``micropython.py``: the MicroPython behaviour both emulate (filesystem tuples, ticks, reset
  causes, ``machine``, the heap);
- ``cpython/``: every board's firmware in this process, for fleet scale;
- ``mpy/``: each board's firmware on the real MicroPython VM under Node, for fidelity;
- ``fleet.py``: many boards planned over the programme's sites and run together.

``runner_for(engine)`` gives an engine's runner class by the name ``--engine`` takes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hw.engines.base import BoardRunner

ENGINES = ("cpython", "mpy")


def runner_for(engine: str) -> type[BoardRunner]:
    """The board runner of an engine: ``cpython`` (this process) or ``mpy`` (the real VM)."""
    if engine == "cpython":
        from hw.engines.cpython.runner import CPythonBoardRunner

        return CPythonBoardRunner
    if engine == "mpy":
        from hw.engines.mpy.runner import VmBoardRunner

        return VmBoardRunner
    raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
