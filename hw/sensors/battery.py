"""A battery behind a resistor divider, as the firmware's ``battery.py`` meets it on an ADC pin.

``BatteryModel(source, ratio=2.0)`` is the voltage source of an ``hw.machine.ADC``::

    adc = ADC(Pin(35), atten=ADC.ATTN_11DB, source=BatteryModel(lambda: 3.95))
"""

from __future__ import annotations

from collections.abc import Callable

from hw.machine import Device


class BatteryModel(Device):
    """A battery behind a divider: call it for the volts at the ADC pin.

    ``source()`` gives the battery's terminal voltage. Under ``"timeout"`` the divider is open
    and the pin reads 0 V; under ``"garbage"`` the pin is shorted to the 3.3 V rail (a wet
    connector), which reads as full scale.
    """

    def __init__(self, source: Callable[[], float], *, ratio: float = 2.0) -> None:
        self.source = source
        self.ratio = ratio

    def __call__(self) -> float:
        if self.fault == "timeout":
            return 0.0
        if self.fault == "garbage":
            return 3.3
        return self.source() / self.ratio
