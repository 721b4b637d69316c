"""Battery voltage through a resistor divider on an ESP32 ADC pin.

``read_uv()`` gives the ESP32's calibrated reading at the pin in microvolts; the divider
(``ratio`` = battery volts / pin volts, 2.0 for two equal resistors) scales it back. A
single-cell Li-ion battery on solar reads 3.5..4.2 V; outside 2.5..4.5 V the divider or the
wiring is broken, not the battery.

Wiring (simpul carrier board)::

    VBAT -> 100k -> GPIO35 -> 100k -> GND  (ratio 2.0), ADC attenuation 11 dB

Usage::

    import asyncio
    from machine import ADC, Pin
    from battery import Battery

    vbat = Battery(ADC(Pin(35), atten=ADC.ATTN_11DB))
    print(asyncio.run(vbat.read()))
    # [('battery', 'V', 3.97)]
"""

from errors import SensorRange

try:
    from micropython import const
except ImportError:

    def const(x):  # type: ignore[misc]  # CPython: const is the identity
        return x


_SAMPLES = const(8)  # the ESP32 ADC is noisy; averaging 8 reads costs well under 1 ms
_MIN_V = 2.5
_MAX_V = 4.5


class Battery:
    name = "battery"

    def __init__(self, adc, ratio=2.0):
        self._adc = adc
        self._ratio = ratio

    async def read(self):
        total = 0
        for _ in range(_SAMPLES):
            total += self._adc.read_uv()
        volts = round(total * self._ratio / (_SAMPLES * 1000000), 2)
        if not _MIN_V <= volts <= _MAX_V:
            raise SensorRange("battery: %s V outside 2.5..4.5 V" % volts)
        return [("battery", "V", volts)]
