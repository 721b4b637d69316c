"""The ESP32 as the application sees it: the only module that imports ``machine``,
``network`` and ``socket``.

Everything else in the firmware receives a ``Board`` and never reaches for hardware, so the
emulator (``hw/``) can hand the same application an emulated board. A board offers:

- ``config``: the dict from ``/config.json`` (see ``config.py``);
- ``flash``: ``open(path, mode)``, ``remove(path)``, ``rename(a, b)``, ``size(path)`` (-1 if
  absent), ``listdir(path)``, ``mkdir(path)``; absolute paths on the board's filesystem;
- ``bus(name)``: ``"i2c"`` (BME280), ``"pms"`` (PMS5003 UART), ``"sonar"`` (JSN-SR04T UART),
  ``"vbat"`` (battery ADC behind a divider), on the pins of ``pins.py`` unless the config's
  ``pins`` says otherwise;
- ``udp(host, port)``: a datagram link with ``send(data)``, ``async recv(timeout_ms)`` (bytes
  or None on timeout) and ``close()``;
- ``ticks_ms()`` (monotonic), ``time_ms()`` (wall clock, Unix epoch, ms), ``async sleep_ms(ms)``;
- ``feed_watchdog()``, ``reset_cause()`` (``power_on``, ``hard``, ``wdt``, ``deepsleep``,
  ``soft``), ``reset()``, ``deepsleep(ms)``;
- ``mem()`` as ``(free, allocated)`` heap bytes, ``rssi()`` (dBm or None), ``urandom(n)``;
- ``log(line)``: one line on the serial console.
"""

import asyncio
import gc
import os
import socket
import time

import machine
import network
from flashfs import Flash
from pins import PINS

_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0

_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "wdt",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft",
}


class Udp:
    def __init__(self, host, port):
        self._addr = socket.getaddrinfo(host, port)[0][-1]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def send(self, data):
        self._sock.sendto(data, self._addr)

    async def recv(self, timeout_ms):
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            try:
                return self._sock.recv(1280)
            except OSError:
                pass
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return None
            await asyncio.sleep_ms(5)

    def close(self):
        self._sock.close()


class Board:
    def __init__(self, config):
        self.config = config
        self.flash = Flash()
        self._pins = dict(PINS)
        self._pins.update(config.get("pins", {}))
        self._buses = {}
        self._wdt = machine.WDT(timeout=config.get("watchdog_ms", 120000))
        self._wlan = network.WLAN(network.STA_IF)

    def bus(self, name):
        if name not in self._buses:
            self._buses[name] = self._open_bus(name)
        return self._buses[name]

    def _open_bus(self, name):
        p = self._pins
        if name == "i2c":
            return machine.I2C(0, scl=machine.Pin(p["i2c_scl"]), sda=machine.Pin(p["i2c_sda"]))
        if name == "pms":
            return machine.UART(1, 9600, tx=p["pms_tx"], rx=p["pms_rx"], timeout=0)
        if name == "sonar":
            return machine.UART(2, 9600, tx=p["sonar_tx"], rx=p["sonar_rx"], timeout=0)
        if name == "vbat":
            return machine.ADC(machine.Pin(p["vbat_adc"]), atten=machine.ADC.ATTN_11DB)
        raise ValueError("no bus " + name)

    def udp(self, host, port):
        return Udp(host, port)

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def time_ms(self):
        return (time.time_ns() // 1000000) + _EPOCH_OFFSET * 1000

    async def sleep_ms(self, ms):
        await asyncio.sleep_ms(ms)

    def feed_watchdog(self):
        self._wdt.feed()

    def reset_cause(self):
        return _CAUSES.get(machine.reset_cause(), "unknown")

    def reset(self):
        machine.reset()

    def deepsleep(self, ms):
        machine.deepsleep(ms)

    def mem(self):
        return gc.mem_free(), gc.mem_alloc()

    def rssi(self):
        try:
            return self._wlan.status("rssi")
        except OSError:
            return None

    def urandom(self, n):
        return os.urandom(n)

    def log(self, line):
        print(line)
