"""The parts of MicroPython's ``machine`` module the firmware drivers use, emulated.

Method names, arguments and failure modes follow MicroPython on the ESP32, so a driver that
works here works on a board: a device that does not acknowledge on I2C raises
``OSError(errno.ENODEV)``; a UART ``read`` with nothing waiting returns ``None``.

The buses are driven by device models (``hw/sensors/``): an I2C bus maps addresses to
``I2CDevice`` objects with a register interface, a UART forwards what the firmware writes to
its ``UARTDevice`` and queues what the device answers or emits. Every device carries a
``fault`` the engine or a test can set at any time:

- ``None``: healthy;
- ``"timeout"``: the device stops answering (I2C: no ACK; UART: silence);
- ``"garbage"``: it answers, but with corrupt bytes (the model decides which: frames with a
  bad checksum, a wrong chip id, random noise).

Nothing here holds module-level state, so many emulated boards can share one process.
"""

from __future__ import annotations

import calendar
import errno
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final

FAULTS: Final = (None, "timeout", "garbage")

_LOG_LEN: Final = 256  # transactions remembered per bus: enough for a test, bounded for a fleet


class Device:
    """Something on a bus that can be told to fail."""

    _fault: str | None = None

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, fault: str | None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, not {fault!r}")
        self._fault = fault


class I2CDevice(Device):
    """A register-mapped I2C peripheral: what a chip does when the bus reads or writes."""

    def read(self, reg: int, n: int) -> bytes:
        """Return ``n`` bytes starting at register ``reg`` (auto-incrementing)."""
        raise NotImplementedError

    def write(self, reg: int, data: bytes) -> None:
        """Take ``data`` written starting at register ``reg``."""
        raise NotImplementedError


class UARTDevice(Device):
    """A serial peripheral: answers what it is sent and may talk on its own."""

    def on_write(self, data: bytes) -> bytes:
        """Take bytes sent by the board; return bytes to queue for the board to read."""
        raise NotImplementedError

    def pending(self) -> bytes:
        """Bytes the device sent on its own since it was last asked (e.g. a stream)."""
        return b""


class Pin:
    """A GPIO pin. Outputs record every level they are set to; inputs are driven by tests."""

    IN: Final = 1
    OUT: Final = 3
    OPEN_DRAIN: Final = 7
    PULL_UP: Final = 2
    PULL_DOWN: Final = 1
    IRQ_RISING: Final = 1
    IRQ_FALLING: Final = 2

    def __init__(
        self,
        id: int,
        mode: int = -1,
        pull: int = -1,
        *,
        value: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.id = id
        self.mode = mode
        self.pull = pull
        self._clock = clock
        self._level = 1 if pull == self.PULL_UP else 0
        self.history: list[tuple[float, int]] = []
        if value is not None:
            self.value(value)

    def init(self, mode: int = -1, pull: int = -1, *, value: int | None = None) -> None:
        self.mode = mode
        self.pull = pull
        if value is not None:
            self.value(value)

    def value(self, x: int | bool | None = None) -> int | None:
        if x is None:
            return self._level
        self._level = 1 if x else 0
        now = self._clock() if self._clock is not None else time.monotonic()
        self.history.append((now, self._level))
        return None

    def __call__(self, x: int | bool | None = None) -> int | None:
        return self.value(x)

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)

    def drive(self, level: int | bool) -> None:
        """Set the level from outside, as a wire would (for input pins)."""
        self._level = 1 if level else 0

    def levels(self) -> list[int]:
        """The levels the pin was set to, in order."""
        return [level for _, level in self.history]

    def __repr__(self) -> str:
        return f"Pin({self.id})"


def _no_ack(addr: int) -> OSError:
    return OSError(errno.ENODEV, f"ENODEV (no device at 0x{addr:02x})")


class I2C:
    """An I2C controller with devices at fixed 7-bit addresses."""

    def __init__(
        self,
        id: int = 0,
        *,
        scl: Pin | int | None = None,
        sda: Pin | int | None = None,
        freq: int = 400000,
        timeout: int = 50000,
        devices: Mapping[int, I2CDevice] | None = None,
    ) -> None:
        self.id = id
        self.scl = scl
        self.sda = sda
        self.freq = freq
        self.timeout = timeout
        self.devices: dict[int, I2CDevice] = dict(devices or {})
        self.log: deque[tuple[str, int, int, bytes]] = deque(maxlen=_LOG_LEN)
        self._pointer: dict[int, int] = {}

    def _device(self, addr: int) -> I2CDevice:
        dev = self.devices.get(addr)
        if dev is None or dev.fault == "timeout":
            raise _no_ack(addr)
        return dev

    def scan(self) -> list[int]:
        return sorted(a for a, d in self.devices.items() if d.fault != "timeout")

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, *, addrsize: int = 8) -> bytes:
        data = bytes(self._device(addr).read(memaddr, nbytes))
        if len(data) != nbytes:
            raise ValueError(f"device at 0x{addr:02x} gave {len(data)} bytes, not {nbytes}")
        self.log.append(("read", addr, memaddr, data))
        return data

    def readfrom_mem_into(
        self, addr: int, memaddr: int, buf: bytearray | memoryview, *, addrsize: int = 8
    ) -> None:
        buf[:] = self.readfrom_mem(addr, memaddr, len(buf), addrsize=addrsize)

    def writeto_mem(
        self, addr: int, memaddr: int, buf: bytes | bytearray | memoryview, *, addrsize: int = 8
    ) -> None:
        data = bytes(buf)
        self._device(addr).write(memaddr, data)
        self.log.append(("write", addr, memaddr, data))

    def writeto(self, addr: int, buf: bytes | bytearray | memoryview, stop: bool = True) -> int:
        """Write ``buf``: its first byte selects the register, the rest is written there."""
        data = bytes(buf)
        dev = self._device(addr)
        if data:
            self._pointer[addr] = data[0]
            if len(data) > 1:
                dev.write(data[0], data[1:])
            self.log.append(("write", addr, data[0], data[1:]))
        return len(data)

    def readfrom(self, addr: int, nbytes: int, stop: bool = True) -> bytes:
        """Read from the register the last ``writeto`` selected."""
        return self.readfrom_mem(addr, self._pointer.get(addr, 0), nbytes)

    def writes(self, addr: int) -> list[tuple[int, bytes]]:
        """The (register, data) writes to ``addr`` still in the log, oldest first."""
        return [(reg, data) for op, a, reg, data in self.log if op == "write" and a == addr]


class UART:
    """A UART whose other end is a device model; received bytes wait in a bounded buffer."""

    def __init__(
        self,
        id: int,
        baudrate: int = 9600,
        bits: int = 8,
        parity: int | None = None,
        stop: int = 1,
        *,
        tx: Pin | int | None = None,
        rx: Pin | int | None = None,
        timeout: int = 0,
        rxbuf: int = 256,
        device: UARTDevice | None = None,
    ) -> None:
        self.id = id
        self.device = device
        self.tx = tx
        self.rx = rx
        self.init(baudrate, bits, parity, stop, timeout=timeout, rxbuf=rxbuf)
        self._rx: bytearray = bytearray()
        self.sent = bytearray()  # everything the board wrote, for tests
        self.overruns = 0  # bytes dropped because the RX buffer was full

    def init(
        self,
        baudrate: int = 9600,
        bits: int = 8,
        parity: int | None = None,
        stop: int = 1,
        *,
        timeout: int = 0,
        rxbuf: int = 256,
    ) -> None:
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop
        self.timeout = timeout
        self.rxbuf = rxbuf

    def deinit(self) -> None:
        self._rx.clear()

    def inject(self, data: bytes) -> None:
        """Queue bytes as if they had arrived on RX (line noise, a second talker)."""
        room = max(0, self.rxbuf - len(self._rx))
        self._rx += data[:room]
        self.overruns += max(0, len(data) - room)

    def _poll(self) -> None:
        if self.device is not None and self.device.fault != "timeout":
            self.inject(self.device.pending())

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        data = bytes(buf)
        self.sent += data
        if self.device is not None and self.device.fault != "timeout":
            self.inject(self.device.on_write(data))
        return len(data)

    def any(self) -> int:
        self._poll()
        return len(self._rx)

    def read(self, nbytes: int | None = None) -> bytes | None:
        self._poll()
        if not self._rx:
            return None
        n = len(self._rx) if nbytes is None else min(nbytes, len(self._rx))
        data = bytes(self._rx[:n])
        del self._rx[:n]
        return data

    def readinto(self, buf: bytearray | memoryview, nbytes: int | None = None) -> int | None:
        n = len(buf) if nbytes is None else min(nbytes, len(buf))
        data = self.read(n)
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    def flush(self) -> None:
        pass

    def txdone(self) -> bool:
        return True


class ADC:
    """An ESP32 ADC channel reading the voltage a source puts on its pin.

    ``read_uv()`` is the calibrated reading, quantised to the 12-bit converter's step and
    limited to what the attenuation can measure; ``read_u16()`` and ``read()`` are raw.
    """

    ATTN_0DB: Final = 0
    ATTN_2_5DB: Final = 1
    ATTN_6DB: Final = 2
    ATTN_11DB: Final = 3
    WIDTH_9BIT: Final = 0
    WIDTH_10BIT: Final = 1
    WIDTH_11BIT: Final = 2
    WIDTH_12BIT: Final = 3

    # Measurable range at the pin for each attenuation (ESP32 datasheet), microvolts.
    _RANGE_UV: Final = {0: (0, 950_000), 1: (0, 1_250_000), 2: (0, 1_750_000), 3: (0, 2_450_000)}

    def __init__(
        self,
        pin: Pin | int,
        *,
        atten: int = 0,
        source: Callable[[], float],
    ) -> None:
        self.pin = pin
        self._atten = atten
        self._source = source

    def atten(self, atten: int) -> None:
        self._atten = atten

    def init(self, *, atten: int | None = None) -> None:
        if atten is not None:
            self._atten = atten

    def _counts(self) -> int:
        low, high = self._RANGE_UV[self._atten]
        uv = self._source() * 1e6
        return round(min(max(uv - low, 0), high - low) * 4095 / (high - low))

    def read_uv(self) -> int:
        low, high = self._RANGE_UV[self._atten]
        return low + round(self._counts() * (high - low) / 4095)

    def read_u16(self) -> int:
        return self._counts() * 65535 // 4095

    def read(self) -> int:
        return self._counts()


class WDT:
    """The watchdog: once started it cannot be stopped; the engine asks if it has expired."""

    def __init__(
        self, id: int = 0, timeout: int = 5000, *, clock_ms: Callable[[], float] | None = None
    ) -> None:
        self.timeout = timeout
        self._clock_ms = clock_ms or (lambda: time.monotonic() * 1000)
        self.last_feed_ms = self._clock_ms()
        self.feeds = 0

    def feed(self) -> None:
        self.last_feed_ms = self._clock_ms()
        self.feeds += 1

    def expired(self, now_ms: float) -> bool:
        return now_ms - self.last_feed_ms > self.timeout


class RTC:
    """The real-time clock and its slow memory, which survives deep sleep (not power loss)."""

    MEMORY_SIZE: Final = 2048

    def __init__(self, id: int = 0, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.time
        self._offset = 0.0
        self._memory = b""

    def datetime(
        self, datetimetuple: tuple[int, int, int, int, int, int, int, int] | None = None
    ) -> tuple[int, int, int, int, int, int, int, int] | None:
        """Get or set (year, month, day, weekday, hours, minutes, seconds, subseconds µs)."""
        if datetimetuple is None:
            now = self._clock() + self._offset
            t = time.gmtime(now)
            micros = int((now - int(now)) * 1e6)
            return (
                t.tm_year,
                t.tm_mon,
                t.tm_mday,
                t.tm_wday,
                t.tm_hour,
                t.tm_min,
                t.tm_sec,
                micros,
            )
        year, month, day, _, hours, minutes, seconds, micros = datetimetuple
        wanted = calendar.timegm((year, month, day, hours, minutes, seconds, 0, 0, 0))
        self._offset = wanted + micros / 1e6 - self._clock()
        return None

    def memory(self, data: bytes | None = None) -> bytes | None:
        if data is None:
            return self._memory
        if len(data) > self.MEMORY_SIZE:
            raise ValueError("buffer too long")
        self._memory = bytes(data)
        return None
