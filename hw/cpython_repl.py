"""REPL code on the CPython engine: executed for one board, against that board's flash.

Code a technician (or ``mpremote``) sends to a board runs with ``exec`` in a namespace of
that board's own: ``open`` and the modules MicroPython code imports for files and the chip
(``os``, ``time``, ``machine``, ``gc``, ``micropython``) are stand-ins over the board's
flash directory and clocks, and ``print`` goes to the board's serial port. Other imports are
CPython's. The code runs in a worker thread, so a long loop stalls no other board, and
Ctrl-C raises ``KeyboardInterrupt`` in it.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import os
import stat
import threading
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from hw.board import BoardReset
from hw.flash import Flash


def mp_oserror(e: OSError) -> OSError:
    """An OSError as MicroPython words it (``[Errno 2] ENOENT``), so tools recognise it."""
    code = e.errno or errno.EIO
    return OSError(code, errno.errorcode.get(code, "EIO"))


class BoardFiles:
    """``os`` and ``open`` of MicroPython, over one board's flash directory."""

    def __init__(self, flash: Flash) -> None:
        self._flash = flash
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

    def _host(self, path: str) -> str:
        return str(self._flash.host_path(self._abs(path)))

    def open(self, path: str, mode: str = "r", *_args: Any, **_kwargs: Any) -> Any:
        try:
            return self._flash.open(self._abs(path), mode)
        except OSError as e:
            raise mp_oserror(e) from None

    def module(self) -> ModuleType:
        os_module = ModuleType("os")
        calls: dict[str, Callable[..., Any]] = {
            "listdir": self.listdir,
            "ilistdir": self.ilistdir,
            "stat": self.stat,
            "statvfs": self.statvfs,
            "remove": self.remove,
            "unlink": self.remove,
            "rename": self.rename,
            "mkdir": self.mkdir,
            "rmdir": self.rmdir,
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

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as e:
            raise mp_oserror(e) from None

    def listdir(self, path: str = "") -> list[str]:
        return sorted(self._guard(os.listdir, self._host(path or self._cwd)))

    def ilistdir(self, path: str = "") -> Any:
        host = self._host(path or self._cwd)
        for name in sorted(self._guard(os.listdir, host)):
            st = os.stat(os.path.join(host, name))
            if stat.S_ISDIR(st.st_mode):
                yield (name, 0x4000, 0, 0)
            else:
                yield (name, 0x8000, 0, st.st_size)

    def stat(self, path: str) -> tuple[int, ...]:
        st = self._guard(os.stat, self._host(path))
        mode = 0x4000 if stat.S_ISDIR(st.st_mode) else 0x8000
        t = int(st.st_mtime)
        return (mode, 0, 0, 0, 0, 0, 0 if mode == 0x4000 else st.st_size, t, t, t)

    def statvfs(self, path: str = "/") -> tuple[int, ...]:
        return (4096, 4096, 512, 256, 256, 0, 0, 0, 0, 255)

    def remove(self, path: str) -> None:
        if os.path.isdir(self._host(path)):
            raise OSError(errno.EISDIR, "EISDIR")
        self._guard(os.remove, self._host(path))

    def rename(self, old: str, new: str) -> None:
        self._guard(os.replace, self._host(old), self._host(new))

    def mkdir(self, path: str) -> None:
        self._guard(os.mkdir, self._host(path))

    def rmdir(self, path: str) -> None:
        self._guard(os.rmdir, self._host(path))

    def chdir(self, path: str) -> None:
        target = self._abs(path)
        if not os.path.isdir(self._host(target)):
            raise OSError(errno.ENOENT, "ENOENT")
        self._cwd = target

    def getcwd(self) -> str:
        return self._cwd

    def uname(self) -> tuple[str, ...]:
        return ("esp32", "esp32", "1.27.0", "v1.27.0", "ESP32 module with ESP32")


def _micropython_time() -> ModuleType:
    t = ModuleType("time")
    period = 1 << 30
    start = time.monotonic()

    def ticks_ms() -> int:
        return int((time.monotonic() - start) * 1000) % period

    def ticks_us() -> int:
        return int((time.monotonic() - start) * 1_000_000) % period

    def ticks_diff(a: int, b: int) -> int:
        half = period // 2
        return ((a - b + half) % period) - half

    fns: dict[str, Callable[..., Any]] = {
        "sleep": time.sleep,
        "sleep_ms": lambda ms: time.sleep(ms / 1000),
        "sleep_us": lambda us: time.sleep(us / 1_000_000),
        "ticks_ms": ticks_ms,
        "ticks_us": ticks_us,
        "ticks_cpu": ticks_us,
        "ticks_diff": ticks_diff,
        "ticks_add": lambda t, delta: (t + delta) % period,
        "time": lambda: int(time.time()),
        "time_ns": time.time_ns,
        "gmtime": time.gmtime,
        "localtime": time.localtime,
        "mktime": time.mktime,
    }
    for name, fn in fns.items():
        setattr(t, name, fn)
    return t


class Namespace:
    """One boot's REPL globals for a board; ``execute`` runs code in them."""

    def __init__(self, flash: Flash, reset_cause: str) -> None:
        self._files = BoardFiles(flash)
        self._out: Callable[[bytes], None] = lambda data: None
        self._thread: threading.Thread | None = None
        machine = ModuleType("machine")
        causes = {"power_on": 1, "hard": 2, "wdt": 3, "deepsleep": 4, "soft": 5}

        def reset() -> None:
            raise BoardReset("soft")

        extras: dict[str, Any] = {
            "reset": reset,
            "soft_reset": reset,
            "reset_cause": lambda: causes.get(reset_cause, 1),
            "freq": lambda *a: 240_000_000,
            "unique_id": lambda: b"\x24\x0a\xc4\x00\x00\x01",
            "PWRON_RESET": 1,
            "HARD_RESET": 2,
            "WDT_RESET": 3,
            "DEEPSLEEP_RESET": 4,
            "SOFT_RESET": 5,
        }
        for name, value in extras.items():
            setattr(machine, name, value)
        gc = ModuleType("gc")
        gc.collect = lambda: None  # type: ignore[attr-defined]
        gc.mem_free = lambda: 0  # type: ignore[attr-defined]  # one board's heap is not visible
        gc.mem_alloc = lambda: 0  # type: ignore[attr-defined]
        micropython = ModuleType("micropython")
        micropython.const = lambda x: x  # type: ignore[attr-defined]
        os_module = self._files.module()
        self._modules: dict[str, ModuleType] = {
            "os": os_module,
            "uos": os_module,
            "time": _micropython_time(),
            "machine": machine,
            "gc": gc,
            "micropython": micropython,
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
        except BaseException as e:
            if type(e).__name__ == "PowerCut":
                raise
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
