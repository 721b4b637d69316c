"""The host side of one board on the MicroPython VM engine: a Node process and its calls.

``VmProcess`` runs ``node board.mjs`` for one boot of a board and answers what the VM side
(``rom/vmboard.py``) asks, with the board's hardware living here in CPython: the sensor models
on their buses, the flash directory (with its power-cut faults), UDP links through the host
(with their loss, delay and down faults), the wall clock (with drift), the radio. What
MicroPython itself would answer (filesystem tuples, ``machine``, the heap against an ESP32's)
comes from ``hw/engines/micropython.py``, as on the CPython engine.

The calls, one JSON line each way (``"?" + [op, args...]`` in, ``[value]`` or ``{"e": errno}``
out; bytes travel as hex):

==========================  ===========================================================
``boot``                    the boot's settings: heap_probe, reset_cause, update_only
``machine``                 ``machine_facts``: reset-cause constants and code, freq, unique_id
``bus name``                the bus's kind (``i2c``, ``uart``, ``adc``), ENODEV if absent
``i2c.read bus a r n``      ``readfrom_mem``: hex; ``i2c.write bus a r hex``; ``i2c.scan``
``uart.write bus hex``      bytes written; ``uart.any bus``; ``uart.read bus n``: hex|null
``adc.read_uv bus``         microvolts; ``adc.read_u16 bus``
``open path mode``          a file handle; ``read h n``, ``readline h``, ``write h hex``,
                            ``seek h off whence``, ``close h``
``ls``, ``stat``, ``statvfs``, ``remove``, ``rename``, ``mkdir``, ``rmdir``  the VFS
``udp.open host port``      a link id; ``udp.send link hex``; ``udp.close link``
``time_ms``, ``rssi``, ``urandom n``, ``mem allocated``
``aes key mode enc iv hex``  ``cryptolib``'s AES on whole blocks: hex (``rom/cryptolib.py``)
``reset cause``             the chip restarts (the call never returns); ``deepsleep ms``
==========================  ===========================================================

Notifications from the VM (``"!" + [...]``, no answer) carry its console output, watchdog
feeds, the end of the firmware's task, the end of REPL code and heap peaks; events to the VM
go on a pipe of their own (see ``board.mjs``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hw.engines.chip import BoardReset, Faults, wall_clock_ms
from hw.engines.micropython import FlashFilesystem, cryptolib_aes, heap
from hw.engines.mpy import vm_package
from hw.firmware_tools import FIRMWARE_DIR, UPDATE_ONLY
from hw.flash import Flash, PowerCut
from hw.link import UdpLink
from hw.machine import ADC, I2C, UART

NODE_SCRIPT = Path(__file__).with_name("board.mjs")
ROM = Path(__file__).with_name("rom")
START_TIMEOUT_S = 30.0  # Node and the VM load in well under a second; a loaded CI runner is slower
STOP_TIMEOUT_S = 2.0  # for the firmware's task to end after Ctrl-C


class VmCrash(Exception):
    """The VM process died or the firmware's task ended with an exception."""


def node_command() -> list[str]:
    """``node board.mjs --vm <the VM's module>``; VmError naming the fix if either is missing."""
    return [vm_package.node(), str(NODE_SCRIPT), "--vm", str(vm_package.vm_module())]


class _ForwardingLink(UdpLink):
    """A board's UDP link whose received datagrams go straight to the VM's inbox."""

    def __init__(self, host: str, port: int, faults: Faults, forward: Callable[[bytes], None]):
        super().__init__(host, port, faults.link)
        self._forward = forward

    def _deliver(self, data: bytes) -> None:
        self.received += 1
        self._forward(data)


class VmProcess:
    """One boot of a board: the Node process running the VM, and the host's answers."""

    def __init__(
        self,
        *,
        flash: Flash,
        buses: Mapping[str, Any],
        faults: Faults,
        rssi: Callable[[], int | None],
        reset_cause: str,
        machine: Mapping[str, Any],
        on_output: Callable[[bytes], None],
        heap_probe: bool = False,
        bare: bool = False,
    ) -> None:
        self.flash = flash
        self._bare = bare  # MicroPython alone: no boot.py runs
        self._fs = FlashFilesystem(flash)
        self._buses = buses
        self._faults = faults
        self._rssi = rssi
        self._reset_cause = reset_cause
        self._machine = machine
        self._on_output = on_output
        self._heap_probe = heap_probe
        self._proc: asyncio.subprocess.Process | None = None
        self._events: asyncio.WriteTransport | None = None
        self._files: dict[int, Any] = {}
        self._next_handle = 1
        self._links: dict[int, UdpLink] = {}
        self._serve_task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._main: asyncio.Future[None] | None = None
        self._exec: asyncio.Future[str] | None = None
        self._ended: BaseException | None = None
        self._interrupt = False
        self.watchdog_fed = time.monotonic()
        self.heap_peak = 0
        self.heap_marks: dict[str, int] = {}  # live heap at named moments (heap probe on)
        self.cpu_s = 0.0

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *node_command(),
                "--rom",
                str(FIRMWARE_DIR),
                "--rom",
                str(ROM),
                "--events",
                str(read_fd),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,
                pass_fds=(read_fd,),
                limit=1 << 20,
            )
        finally:
            os.close(read_fd)
        pipe = os.fdopen(write_fd, "wb", buffering=0)
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
        assert isinstance(transport, asyncio.WriteTransport)
        self._events = transport
        self._ready = loop.create_future()
        self._serve_task = asyncio.ensure_future(self._serve())
        await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_S)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def close(self) -> None:
        """Power off: the process goes, and everything the boot held on the host."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self.cpu_s = cpu_seconds(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._serve_task is not None:
            self._serve_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve_task
        if self._events is not None:
            self._events.close()
        for f in self._files.values():
            with contextlib.suppress(OSError):
                f.close()
        self._files.clear()
        for link in self._links.values():
            link.close()
        self._links.clear()
        self._end(VmCrash("the board was powered off"))

    def _end(self, reason: BaseException) -> None:
        """The boot is over (reset, power cut, crash): fail whatever still waits on it."""
        if self._ended is None:
            self._ended = reason
        for fut in (self._ready, self._main, self._exec):
            if fut is not None and not fut.done():
                fut.set_exception(reason)
                fut.exception()  # retrieved: nobody may be waiting any more

    def _kill(self, reason: BaseException) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self.cpu_s = cpu_seconds(self._proc.pid)
            self._proc.kill()
        self._end(reason)

    # --- what the engine asks -------------------------------------------------------------

    def _send_event(self, *event: Any) -> None:
        if self._events is not None and not self._events.is_closing():
            self._events.write(json.dumps(event).encode() + b"\n")

    def start_main(self) -> asyncio.Future[None]:
        self._main = asyncio.get_running_loop().create_future()
        self.watchdog_fed = time.monotonic()
        self._send_event("m", self._reset_cause)
        return self._main

    async def stop_main(self) -> None:
        main = self._main
        if main is None or main.done():
            return
        self._send_event("s")
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(asyncio.shield(main), STOP_TIMEOUT_S)

    async def execute(self, source: str, single: bool) -> str:
        """Run REPL code in the VM; its output goes to ``on_output``; return its error text."""
        if self._ended is not None:
            raise self._ended
        self._exec = asyncio.get_running_loop().create_future()
        self._interrupt = False
        self._send_event("x", source, single)
        return await self._exec

    def interrupt_execution(self) -> None:
        """Ctrl-C while REPL code runs: a KeyboardInterrupt at its next call to the host."""
        self._interrupt = True

    def reset_heap_peak(self) -> None:
        self.heap_peak = 0
        self._send_event("h")

    # --- the calls ------------------------------------------------------------------------

    async def _serve(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        assert proc.stdin is not None
        try:
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                kind, body = line[:1], line[1:]
                if kind == b"?":
                    reply = self._answer(json.loads(body))
                    if self._ended is not None:
                        return
                    if self._interrupt:
                        self._interrupt = False
                        reply = "K" + reply
                    proc.stdin.write(reply.encode() + b"\n")
                elif kind == b"!":
                    self._notified(json.loads(body))
        finally:
            code = await proc.wait()
            self._end(VmCrash(f"the VM process exited with {code}"))

    def _answer(self, request: list[Any]) -> str:
        op, args = request[0], request[1:]
        try:
            value = self._call(op, args)
        except OSError as e:
            return json.dumps({"e": e.errno or 5})
        except ValueError:
            return json.dumps({"e": 5})  # EIO: a device answered with the wrong length
        except PowerCut as cut:
            self._kill(cut)
            return ""
        except BoardReset as reset:
            self._kill(reset)
            return ""
        return json.dumps([value])

    def _notified(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == "o":
            self._on_output(base64.b64decode(message[1]))
        elif kind == "wdt":
            self.watchdog_fed = time.monotonic()
        elif kind == "heap":
            self.heap_peak = max(self.heap_peak, int(message[1]))
        elif kind == "mark":
            self.heap_marks[str(message[1])] = int(message[2])
        elif kind == "done":
            if self._exec is not None and not self._exec.done():
                self._exec.set_result(message[1])
        elif kind == "end":
            main = self._main
            if main is not None and not main.done():
                if message[1] in ("", "cancelled"):
                    main.set_result(None)
                else:
                    main.set_exception(VmCrash(message[1]))
        elif kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif kind == "crash":
            self._kill(VmCrash(message[1]))

    def _call(self, op: str, args: list[Any]) -> Any:
        handler = _HANDLERS.get(op)
        if handler is None:
            raise OSError(22, f"unknown call {op}")
        return handler(self, *args)

    def _bus(self, name: str) -> Any:
        try:
            return self._buses[name]
        except KeyError:
            raise OSError(19, f"no bus {name}") from None

    # hardware
    def _boot(self) -> dict[str, Any]:
        return {
            "heap_probe": self._heap_probe,
            "reset_cause": self._reset_cause,
            "update_only": list(UPDATE_ONLY),
            "bare": self._bare,
        }

    def _machine_facts(self) -> dict[str, Any]:
        return {**self._machine, "unique_id": bytes(self._machine["unique_id"]).hex()}

    def _bus_kind(self, name: str) -> str:
        bus = self._bus(name)
        for kind, cls in (("i2c", I2C), ("uart", UART), ("adc", ADC)):
            if isinstance(bus, cls):
                return kind
        raise OSError(19, f"bus {name} is of no known kind")

    def _i2c_read(self, bus: str, addr: int, reg: int, n: int) -> str:
        return bytes(self._bus(bus).readfrom_mem(addr, reg, n)).hex()

    def _i2c_write(self, bus: str, addr: int, reg: int, data: str) -> None:
        self._bus(bus).writeto_mem(addr, reg, bytes.fromhex(data))

    def _i2c_scan(self, bus: str) -> list[int]:
        return list(self._bus(bus).scan())

    def _uart_write(self, bus: str, data: str) -> int:
        return int(self._bus(bus).write(bytes.fromhex(data)))

    def _uart_any(self, bus: str) -> int:
        return int(self._bus(bus).any())

    def _uart_read(self, bus: str, n: int | None) -> str | None:
        data = self._bus(bus).read(n)
        return None if data is None else bytes(data).hex()

    def _adc_read_uv(self, bus: str) -> int:
        return int(self._bus(bus).read_uv())

    def _adc_read_u16(self, bus: str) -> int:
        return int(self._bus(bus).read_u16())

    # flash
    def _open(self, path: str, mode: str) -> int:
        if "b" not in mode:
            mode += "b"  # the VM side decodes text
        handle = self._next_handle
        self._next_handle += 1
        # Through the flash's own files, whose writes count toward a power cut.
        self._files[handle] = self.flash.open(path, mode)
        return handle

    def _file(self, handle: int) -> Any:
        try:
            return self._files[handle]
        except KeyError:
            raise OSError(9, "EBADF") from None

    def _read(self, handle: int, n: int) -> str:
        data = self._file(handle).read(None if n is None or n < 0 else n)
        return bytes(data).hex()

    def _readline(self, handle: int) -> str:
        return bytes(self._file(handle).readline()).hex()

    def _write(self, handle: int, data: str) -> int:
        return int(self._file(handle).write(bytes.fromhex(data)))

    def _seek(self, handle: int, offset: int, whence: int) -> int:
        return int(self._file(handle).seek(offset, whence))

    def _close(self, handle: int) -> None:
        f = self._files.pop(handle, None)
        if f is not None:
            f.close()

    def _ls(self, path: str) -> list[tuple[str, int, int, int]]:
        return self._fs.ilistdir(path)

    def _stat(self, path: str) -> tuple[int, ...]:
        return self._fs.stat(path)

    def _statvfs(self) -> tuple[int, ...]:
        return self._fs.statvfs()

    def _remove(self, path: str) -> None:
        self._fs.remove(path)

    def _rename(self, old: str, new: str) -> None:
        self._fs.rename(old, new)

    def _mkdir(self, path: str) -> None:
        self._fs.mkdir(path)

    def _rmdir(self, path: str) -> None:
        self._fs.rmdir(path)

    # network, clocks, chip
    def _udp_open(self, host: str, port: int) -> int:
        link_id = len(self._links) + 1
        self._links[link_id] = _ForwardingLink(
            host, port, self._faults, lambda data: self._send_event("d", link_id, data.hex())
        )
        return link_id

    def _udp_send(self, link: int, data: str) -> None:
        self._links[link].send(bytes.fromhex(data))

    def _udp_close(self, link: int) -> None:
        found = self._links.pop(link, None)
        if found is not None:
            found.close()

    def _time_ms(self) -> int:
        return wall_clock_ms(self._faults)

    def _rssi_now(self) -> int | None:
        return self._rssi()

    def _urandom(self, n: int) -> str:
        return os.urandom(n).hex()

    def _mem(self, allocated: int) -> tuple[int, int]:
        return heap(allocated)

    def _aes(self, key: str, mode: int, encrypt: bool, iv: str, data: str) -> str:
        raw = cryptolib_aes(
            bytes.fromhex(key), mode, encrypt, bytes.fromhex(iv), bytes.fromhex(data)
        )
        return raw.hex()

    def _reset(self, cause: str) -> None:
        raise BoardReset(cause)

    def _deepsleep(self, ms: int) -> None:
        raise BoardReset("deepsleep", ms)


_HANDLERS: dict[str, Callable[..., Any]] = {
    "boot": VmProcess._boot,
    "machine": VmProcess._machine_facts,
    "bus": VmProcess._bus_kind,
    "i2c.read": VmProcess._i2c_read,
    "i2c.write": VmProcess._i2c_write,
    "i2c.scan": VmProcess._i2c_scan,
    "uart.write": VmProcess._uart_write,
    "uart.any": VmProcess._uart_any,
    "uart.read": VmProcess._uart_read,
    "adc.read_uv": VmProcess._adc_read_uv,
    "adc.read_u16": VmProcess._adc_read_u16,
    "open": VmProcess._open,
    "read": VmProcess._read,
    "readline": VmProcess._readline,
    "write": VmProcess._write,
    "seek": VmProcess._seek,
    "close": VmProcess._close,
    "ls": VmProcess._ls,
    "stat": VmProcess._stat,
    "statvfs": VmProcess._statvfs,
    "remove": VmProcess._remove,
    "rename": VmProcess._rename,
    "mkdir": VmProcess._mkdir,
    "rmdir": VmProcess._rmdir,
    "udp.open": VmProcess._udp_open,
    "udp.send": VmProcess._udp_send,
    "udp.close": VmProcess._udp_close,
    "time_ms": VmProcess._time_ms,
    "rssi": VmProcess._rssi_now,
    "urandom": VmProcess._urandom,
    "mem": VmProcess._mem,
    "aes": VmProcess._aes,
    "reset": VmProcess._reset,
    "deepsleep": VmProcess._deepsleep,
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), 0.0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
