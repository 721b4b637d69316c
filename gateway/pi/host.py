"""The host's own sensors, as gpiozero's internal devices: the SoC's temperature
(:class:`~gpiozero.CPUTemperature`), the state directory's file system
(:class:`~gpiozero.DiskUsage`) and the 1-minute load average (:class:`~gpiozero.LoadAverage`).

They read ``/sys`` and ``/proc``, so they work on any Linux machine; where there is no
thermal zone (a container, a VM, a laptop without one) the temperature is None, never an
error. Nothing here needs a GPIO: the devices get :func:`gateway.pi.factory.no_pins` unless
a factory is given.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Final

from gpiozero import CPUTemperature, DiskUsage, LoadAverage

from gateway.pi.factory import no_pins

THERMAL: Final = Path("/sys/class/thermal")
LOADAVG: Final = Path("/proc/loadavg")


class HostSensors:
    """CPU temperature, disk usage and load of the machine the gateway runs on."""

    def __init__(
        self,
        state_dir: Path,
        *,
        thermal: Path = THERMAL,
        loadavg: Path = LOADAVG,
        pin_factory: Any = None,
    ) -> None:
        factory = pin_factory if pin_factory is not None else no_pins()
        self._cpu: CPUTemperature | None = None
        zones = sorted(thermal.glob("thermal_zone*/temp")) if thermal.is_dir() else []
        if zones:
            # Its constructor reads the file once: a zone that cannot be read is no sensor.
            with contextlib.suppress(OSError, ValueError):
                self._cpu = CPUTemperature(sensor_file=str(zones[0]), pin_factory=factory)
        self._disk: DiskUsage | None = None
        with contextlib.suppress(OSError):
            self._disk = DiskUsage(filesystem=str(state_dir), pin_factory=factory)
        self._load: LoadAverage | None = None
        with contextlib.suppress(OSError, ValueError):
            self._load = LoadAverage(load_average_file=str(loadavg), minutes=1, pin_factory=factory)

    def cpu_temp_c(self) -> float | None:
        """The SoC's temperature in °C (the first thermal zone), or None."""
        if self._cpu is None:
            return None
        try:
            return round(float(self._cpu.temperature), 1)
        except (OSError, ValueError):
            return None

    def disk_usage_pct(self) -> float | None:
        """How full the state directory's file system is, in percent, or None."""
        if self._disk is None:
            return None
        try:
            return round(float(self._disk.usage), 1)
        except OSError:
            return None

    def load1(self) -> float | None:
        """The 1-minute load average, or None."""
        if self._load is None:
            return None
        try:
            return float(self._load.load_average)
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        for device in (self._cpu, self._disk, self._load):
            if device is not None:
                device.close()


__all__ = ["HostSensors"]
