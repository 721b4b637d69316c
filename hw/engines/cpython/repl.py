"""REPL code on the CPython engine: executed for one board, against that board's flash.

Code a technician (or ``mpremote``) sends to a board runs with ``exec`` in a namespace of
that board's own: ``open`` and the modules MicroPython code imports for files and the chip
(``os``, ``time``, ``machine``, ``gc``, ``micropython``) are stand-ins over the board's
flash directory and clocks, answering as ``hw/engines/micropython.py`` says MicroPython
does; ``board`` is the firmware's board module as on a chip (``board.Board(config)`` gives
a board over this one's hardware). ``print`` goes to the board's serial port. Other imports
are CPython's. The code runs in a worker thread, so a long loop stalls no other board, and
Ctrl-C raises ``KeyboardInterrupt`` in it.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

from hw.engines.chip import BoardReset
from hw.engines.micropython import (
    FIRMWARE_HEAP_TYPICAL,
    FlashFilesystem,
    Ticks,
    heap,
    mp_oserror,
)
from hw.flash import Flash, PowerCut


class BoardFiles:
    """``os`` and ``open`` of MicroPython, over one board's flash directory, with a cwd."""

    def __init__(self, flash: Flash) -> None:
        self._flash = flash
        self._fs = FlashFilesystem(flash)
        self._cwd = "/"

    def _abs(self, path: str) -> str:
        if not path.startswith("/"):
            path = self._cwd.rstrip("/") + "/" + path
        parts: list[str] = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        return "/" + "/".join(parts)

    def open(self, path: str, mode: str = "r", *_args: Any, **_kwargs: Any) -> Any:
        try:
            return self._flash.open(self._abs(path), mode)
        except OSError as e:
            raise mp_oserror(e) from None

    def module(self) -> ModuleType:
        os_module = ModuleType("os")
        fs = self._fs
        calls: dict[str, Callable[..., Any]] = {
            "listdir": self.listdir,
            "ilistdir": self.ilistdir,
            "stat": lambda path: fs.stat(self._abs(path)),
            "statvfs": lambda path="/": fs.statvfs(),
            "remove": lambda path: fs.remove(self._abs(path)),
            "unlink": lambda path: fs.remove(self._abs(path)),
            "rename": lambda old, new: fs.rename(self._abs(old), self._abs(new)),
            "mkdir": lambda path: fs.mkdir(self._abs(path)),
            "rmdir": lambda path: fs.rmdir(self._abs(path)),
            "chdir": self.chdir,
            "getcwd": self.getcwd,
            "uname": self.uname,
            "urandom": os.urandom,
            "sync": lambda: None,
        }
        for name, fn in calls.items():
            setattr(os_module, name, fn)
        os_module.sep = "/"  # type: ignore[attr-defined]
        return os_module

    def listdir(self, path: str = "") -> list[str]:
        return [entry[0] for entry in self._fs.ilistdir(self._abs(path or self._cwd))]

    def ilistdir(self, path: str = "") -> Iterator[tuple[str, int, int, int]]:
        return iter(self._fs.ilistdir(self._abs(path or self._cwd)))

    def chdir(self, path: str) -> None:
        target = self._abs(path)
        if not self._fs.isdir(target):
            raise OSError(errno.ENOENT, "ENOENT")
        self._cwd = target

    def getcwd(self) -> str:
        return self._cwd

    def uname(self) -> tuple[str, ...]:
        return ("esp32", "esp32", "1.27.0", "v1.27.0", "ESP32 module with ESP32")


def _module(name: str, members: Mapping[str, Any]) -> ModuleType:
    module = ModuleType(name)
    for key, value in members.items():
        setattr(module, key, value)
    return module


def _micropython_time(ticks: Ticks) -> ModuleType:
    return _module(
        "time",
        {
            "sleep": time.sleep,
            "sleep_ms": lambda ms: time.sleep(ms / 1000),
            "sleep_us": lambda us: time.sleep(us / 1_000_000),
            "ticks_ms": ticks.ticks_ms,
            "ticks_us": ticks.ticks_us,
            "ticks_cpu": ticks.ticks_us,
            "ticks_diff": ticks.ticks_diff,
            "ticks_add": ticks.ticks_add,
            "time": lambda: int(time.time()),
            "time_ns": time.time_ns,
            "gmtime": time.gmtime,
            "localtime": time.localtime,
            "mktime": time.mktime,
        },
    )


def _machine(facts: Mapping[str, Any]) -> ModuleType:
    def reset() -> None:
        raise BoardReset("soft")

    return _module(
        "machine",
        {
            **facts["constants"],
            "reset": reset,
            "soft_reset": reset,
            "reset_cause": lambda: facts["reset_cause"],
            "freq": lambda *a: facts["freq"],
            "unique_id": lambda: facts["unique_id"],
        },
    )


class Namespace:
    """One boot's REPL globals for a board; ``execute`` runs code in them.

    ``machine`` is the boot's ``machine_facts``; ``new_board(config, log)`` builds a board over
    this boot's hardware whose ``log`` lines go where ``print`` does.
    """

    def __init__(
        self,
        flash: Flash,
        *,
        ticks: Ticks,
        machine: Mapping[str, Any],
        new_board: Callable[[Mapping[str, Any], Callable[[str], None]], object],
    ) -> None:
        self._files = BoardFiles(flash)
        self._out: Callable[[bytes], None] = lambda data: None
        self._thread: threading.Thread | None = None
        free, allocated = heap(FIRMWARE_HEAP_TYPICAL)
        os_module = self._files.module()
        self._modules: dict[str, ModuleType] = {
            "os": os_module,
            "uos": os_module,
            "time": _micropython_time(ticks),
            "machine": _machine(machine),
            "gc": _module(
                "gc",
                {"collect": lambda: None, "mem_free": lambda: free, "mem_alloc": lambda: allocated},
            ),
            "micropython": _module("micropython", {"const": lambda x: x}),
            "board": _module(
                "board",
                {
                    "Board": lambda config: new_board(config, self._print),
                    "Flash": lambda: flash,
                },
            ),
        }
        self._modules["utime"] = self._modules["time"]
        own = dict(vars(builtins))
        own.update(open=self._files.open, print=self._print, __import__=self._import)
        self.globals: dict[str, Any] = {"__name__": "__main__", "__builtins__": own}

    def _import(self, name: str, *args: Any, **kwargs: Any) -> Any:
        module = self._modules.get(name)
        if module is not None:
            return module
        return builtins.__import__(name, *args, **kwargs)

    def _print(self, *values: Any, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
        text = (sep if sep is not None else " ").join(str(v) for v in values)
        self._out((text + (end if end is not None else "\n")).encode())

    def execute(self, source: str, single: bool, out: Callable[[bytes], None]) -> str:
        """Run ``source`` (call from a worker thread); return MicroPython-style error text.

        A ``BoardReset`` (``machine.reset()``) or a power cut is raised to the caller.
        """
        self._out = out
        self._thread = threading.current_thread()
        try:
            if single:
                try:
                    code = compile(source, "<stdin>", "eval")
                except SyntaxError:
                    exec(compile(source, "<stdin>", "exec"), self.globals)
                else:
                    value = eval(code, self.globals)
                    if value is not None:
                        self._print(repr(value))
            else:
                exec(compile(source, "<stdin>", "exec"), self.globals)
        except (BoardReset, SystemExit) as e:
            if isinstance(e, BoardReset):
                raise
            return ""
        except PowerCut:
            raise
        except BaseException as e:
            return _mp_traceback(e)
        finally:
            self._thread = None
        return ""

    def interrupt(self) -> None:
        thread = self._thread
        if thread is not None and thread.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
            )


def _mp_traceback(e: BaseException) -> str:
    """A traceback as MicroPython prints it: only the frames of the REPL's own code."""
    lines = ["Traceback (most recent call last):\n"]
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == "<stdin>":
            lines.append(f'  File "<stdin>", line {frame.lineno}, in {frame.name}\n')
    if isinstance(e, SyntaxError):
        lines = [
            "Traceback (most recent call last):\n",
            f'  File "<stdin>", line {e.lineno or 1}\n',
        ]
    # MicroPython has no OSError subclasses: FileNotFoundError is an OSError there.
    name = "OSError" if isinstance(e, OSError) else type(e).__name__
    detail = str(e)
    lines.append(f"{name}: {detail}\n" if detail else f"{name}: \n")
    return "".join(lines)
