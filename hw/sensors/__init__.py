"""Device models: the sensors of a simpul node, speaking their chips' real protocols.

One module per chip, as the firmware has one driver per chip. Each model is given a callable
that returns the true physical value at the board's current time (``hw/signals.py`` provides
them) and answers the firmware's driver on an emulated bus (``hw/machine.py``) with the bytes
the real chip would send:

- ``bme280.Bme280Model``: the BME280's register map on I2C;
- ``pms5003.Pms5003Model``: the PMS5003's frames, active and passive modes, its commands;
- ``jsnsr04t.JsnSr04tModel``: the JSN-SR04T's answer to a 0x55 trigger (or its stream);
- ``battery.BatteryModel``: a battery behind a resistor divider, a voltage source for an ADC.

Faults are set with ``model.fault = "timeout" | "garbage" | None`` (see ``hw/machine.py``).
"""

from hw.sensors.battery import BatteryModel
from hw.sensors.bme280 import (
    BME280_CHIP_ID,
    DATASHEET_CALIBRATION,
    Bme280Calibration,
    Bme280Model,
    compensate_humidity,
    compensate_pressure,
    compensate_temperature,
    raw_for,
)
from hw.sensors.jsnsr04t import JsnSr04tModel, jsnsr04t_frame
from hw.sensors.pms5003 import Pms5003Model, pms5003_frame

__all__ = [
    "BME280_CHIP_ID",
    "DATASHEET_CALIBRATION",
    "BatteryModel",
    "Bme280Calibration",
    "Bme280Model",
    "JsnSr04tModel",
    "Pms5003Model",
    "compensate_humidity",
    "compensate_pressure",
    "compensate_temperature",
    "jsnsr04t_frame",
    "pms5003_frame",
    "raw_for",
]
