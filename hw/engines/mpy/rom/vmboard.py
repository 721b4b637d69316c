# mypy: ignore-errors
# ruff: noqa: UP031
# (MicroPython code: it runs inside the VM, never on CPython.)
"""The emulated ESP32 as the firmware sees it on the MicroPython VM engine.

The board contract (``hw/contract.py``, which ``firmware/board.py`` honours on a chip), built
on the host: every bus transaction, flash operation and datagram is a synchronous call to the
CPython host through the ``simpul_host`` JS module (see ``board.mjs`` and ``host.py``). The
flash is a VFS mounted at ``/``, so ``open`` and ``os`` reach the board's flash directory on
the host, for the firmware and for code typed at the REPL alike; the firmware's files sit
read-only at ``/rom``. At the REPL, ``import board`` gives this module, as ``board.py`` on a
chip: ``board.Board(config.load(board.Flash()))`` is a board over this one's hardware.

At power-on the firmware's own ``boot.py`` runs, as on a chip: the boot part chooses the
application slot (``slots.boot``, which may write ``/slots.json``) and puts it first on
``sys.path``. So ``import app`` loads a release's ``.mpy`` files from the flash's ``/a/`` or
``/b/`` and falls through to ``/rom``, the factory application (as modules frozen into a
chip's image), for what the slot does not hold: everything, on a board fresh from the
factory. The importer reads the flash's files through the stream protocol, which is why
``HostFile`` is an ``io.IOBase`` with ``readinto`` and ``ioctl``.

Where the VM differs from an ESP32 build, the difference is here: asyncio's loop is driven
by JS (so the app is started as a task, not with ``asyncio.run``), there are no sockets and
no ``machine``, and the heap grows on demand (``mem()`` reports the heap in use against the
heap an ESP32 has, as the host reckons it).
"""

import asyncio
import binascii
import gc
import io
import json
import os
import sys
import time

import simpul_host
import vfs
from flashfs import Flash

_hexlify = binascii.hexlify
_unhexlify = binascii.unhexlify

_state = {
    "probe": False,
    "peak": 0,
    "main": None,
    "cause": "power_on",
    "update_only": (),
    "bare": False,
}

# MicroPython's stream ioctl requests (py/stream.h) that its importer makes of a file.
_STREAM_CLOSE = 4
_STREAM_GET_BUFFER_SIZE = 11
# Bytes per read when a module is imported from the flash, each read one call to the host:
# the importer's default buffer makes ten times as many calls.
_IMPORT_READ_BYTES = 256


def probe_heap():
    """Live heap now, between two asyncio steps (the JS side calls it every few ms).

    Not inside a step: objects that crossed into JS during a step stay pinned until control
    returns to JS, which is the bridge's doing, not the firmware's.
    """
    gc.collect()
    used = gc.mem_alloc()
    if used > _state["peak"]:
        _state["peak"] = used
        simpul_host.notify('["heap",%d]' % used)


def heap_probing():
    return _state["probe"]


def heap_mark(name):
    """Tell the host the live heap now, under ``name`` (before and after the firmware loads)."""
    gc.collect()
    notify("mark", name, gc.mem_alloc())


def import_firmware():
    """Load every module the application holds up front, so its code is one figure and its
    data another. Not the update-only modules (the host names them), which are imported only
    while an update is checked: hw/firmware_tools/heap.py measures that apart."""
    for name in os.listdir("/rom"):
        module = name[:-3]
        if not name.endswith(".py") or module in _state["update_only"]:
            continue
        if module not in ("vmboard", "machine", "main", "boot", "board"):
            __import__(module)


def call(*request):
    """One synchronous call to the host; raises OSError(errno) when the host says so."""
    reply = json.loads(simpul_host.call(json.dumps(request)))
    if isinstance(reply, dict):
        raise OSError(reply["e"])
    return reply[0]


def notify(*message):
    simpul_host.notify(json.dumps(message))


def _hex(data):
    if isinstance(data, str):
        data = data.encode()
    return _hexlify(data).decode()


# --- flash: a VFS over the host's directory ----------------------------------------------


class HostFile(io.IOBase):
    """A file on the host's flash: Python methods for the firmware, and through ``io.IOBase``
    the stream protocol (``readinto``, ``ioctl``) that C code such as the importer uses."""

    def __init__(self, handle, binary):
        self._handle = handle
        self._binary = binary

    def read(self, n=-1):
        data = _unhexlify(call("read", self._handle, n))
        return data if self._binary else data.decode()

    def readinto(self, buf):
        data = _unhexlify(call("read", self._handle, len(buf)))
        buf[: len(data)] = data
        return len(data)

    def readline(self):
        data = _unhexlify(call("readline", self._handle))
        return data if self._binary else data.decode()

    def write(self, data):
        return call("write", self._handle, _hex(data))

    def seek(self, offset, whence=0):
        return call("seek", self._handle, offset, whence)

    def tell(self):
        return call("seek", self._handle, 0, 1)

    def flush(self):
        pass

    def ioctl(self, request, arg):
        if request == _STREAM_CLOSE:
            self.close()
            return 0
        if request == _STREAM_GET_BUFFER_SIZE:
            return _IMPORT_READ_BYTES
        return -1

    def close(self):
        if self._handle is not None:
            call("close", self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class HostFlash:
    """A MicroPython VFS (the protocol ``vfs.mount`` expects) over the host's flash."""

    def __init__(self):
        self._cwd = "/"

    def _path(self, path):
        if not path.startswith("/"):
            path = self._cwd.rstrip("/") + "/" + path
        return path

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def open(self, path, mode):
        return HostFile(call("open", self._path(path), mode), "b" in mode)

    def ilistdir(self, path):
        for entry in call("ls", self._path(path)):
            yield tuple(entry)

    def stat(self, path):
        return tuple(call("stat", self._path(path)))

    def statvfs(self, path):
        return tuple(call("statvfs"))

    def remove(self, path):
        call("remove", self._path(path))

    def rename(self, old, new):
        call("rename", self._path(old), self._path(new))

    def mkdir(self, path):
        call("mkdir", self._path(path))

    def rmdir(self, path):
        call("rmdir", self._path(path))

    def chdir(self, path):
        path = self._path(path)
        if not call("stat", path)[0] & 0x4000:
            raise OSError(20)  # ENOTDIR
        self._cwd = path

    def getcwd(self):
        return self._cwd


# --- buses: machine.I2C / UART / ADC as the drivers use them ------------------------------


class I2C:
    def __init__(self, bus):
        self._bus = bus

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        return _unhexlify(call("i2c.read", self._bus, addr, memaddr, nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        buf[:] = _unhexlify(call("i2c.read", self._bus, addr, memaddr, len(buf)))

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        call("i2c.write", self._bus, addr, memaddr, _hex(buf))

    def scan(self):
        return call("i2c.scan", self._bus)


class UART:
    def __init__(self, bus):
        self._bus = bus

    def write(self, buf):
        return call("uart.write", self._bus, _hex(buf))

    def any(self):
        return call("uart.any", self._bus)

    def read(self, nbytes=None):
        data = call("uart.read", self._bus, nbytes)
        return None if data is None else _unhexlify(data)

    def readinto(self, buf, nbytes=None):
        data = self.read(len(buf) if nbytes is None else min(nbytes, len(buf)))
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)


class ADC:
    def __init__(self, bus):
        self._bus = bus

    def read_uv(self):
        return call("adc.read_uv", self._bus)

    def read_u16(self):
        return call("adc.read_u16", self._bus)


_BUS_CLASSES = {"i2c": I2C, "uart": UART, "adc": ADC}


class Udp:
    """A datagram link through the host; received datagrams wait in the JS side's inbox."""

    def __init__(self, host, port):
        self._link = call("udp.open", host, port)

    def send(self, data):
        call("udp.send", self._link, _hex(data))

    async def recv(self, timeout_ms):
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            data = simpul_host.recv(self._link)
            if data is not None:
                return _unhexlify(data)
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return None
            await asyncio.sleep_ms(5)

    def close(self):
        call("udp.close", self._link)


class Board:
    def __init__(self, config, reset_cause=None):
        self.config = config
        self.flash = Flash()
        self._reset_cause = reset_cause or _state["cause"]
        self._buses = {}

    def bus(self, name):
        if name not in self._buses:
            try:
                kind = call("bus", name)
            except OSError:
                raise ValueError("no bus " + name) from None
            self._buses[name] = _BUS_CLASSES[kind](name)
        return self._buses[name]

    def udp(self, host, port):
        return Udp(host, port)

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def time_ms(self):
        return call("time_ms")

    async def sleep_ms(self, ms):
        await asyncio.sleep_ms(ms)

    def feed_watchdog(self):
        simpul_host.notify('["wdt"]')

    def reset_cause(self):
        return self._reset_cause

    def reset(self):
        call("reset", "soft")

    def deepsleep(self, ms):
        call("deepsleep", ms)

    def mem(self):
        free, allocated = call("mem", gc.mem_alloc())
        return free, allocated

    def rssi(self):
        return call("rssi")

    def urandom(self, n):
        return _unhexlify(call("urandom", n))

    def log(self, line):
        print(line)


# --- what the JS side calls -----------------------------------------------------------------


def power_on():
    """Mount the host's flash at / and the firmware at /rom, as the chip's boot does."""
    vfs.umount("/")
    vfs.mount(vfs.VfsPosix("/rom"), "/rom", readonly=True)
    vfs.mount(HostFlash(), "/")
    sys.path[:] = ["/rom", ".frozen", "", "/lib"]
    boot = call("boot")
    _state["probe"] = boot["heap_probe"]
    _state["cause"] = boot["reset_cause"]
    _state["update_only"] = boot["update_only"]
    _state["bare"] = boot["bare"]
    # The REPL's `import board` finds this module, as it finds board.py on a chip.
    sys.modules["board"] = sys.modules["vmboard"]


def run_boot_py():
    """The firmware's boot.py, as a chip runs it after mounting its filesystem: an error is
    printed and the firmware starts all the same. A power cut in its write of /slots.json
    ends the VM's process inside that call to the host. A board with nothing installed
    (MicroPython just flashed) has no boot.py to run."""
    if _state["bare"]:
        return
    try:
        with open("/rom/boot.py") as f:
            source = f.read()
        exec(compile(source, "boot.py", "exec"), {"__name__": "__main__"})
    except Exception as e:
        sys.print_exception(e)


def start_main(cause):
    _state["cause"] = cause
    _state["main"] = asyncio.create_task(_run_main())


async def _run_main():
    outcome = ""
    try:
        import app
        import config

        await app.main(Board(config.load(Flash()), _state["cause"]))
    except asyncio.CancelledError:
        outcome = "cancelled"
    except BaseException as e:  # reported to the host, as a board's console shows it
        buf = io.StringIO()
        sys.print_exception(e, buf)
        outcome = buf.getvalue() or repr(e)
        print(outcome, end="")
    notify("end", outcome)


def stop_main():
    task = _state["main"]
    if task is not None and not task.done():
        task.cancel()
    else:
        notify("end", "cancelled")


def reset_heap_peak():
    _state["peak"] = 0


_repl_globals = {"__name__": "__main__"}


def repl_exec(source, single):
    error = ""
    try:
        exec(compile(source, "<stdin>", "single" if single else "exec"), _repl_globals)
    except BaseException as e:  # the REPL shows every error, SystemExit too
        buf = io.StringIO()
        sys.print_exception(e, buf)
        error = buf.getvalue()
    notify("done", error)
