"""Which gpiozero pin factory drives the gateway's pins (``gateway.pi.pin_factory``).

* empty: gpiozero's own choice (``$GPIOZERO_PIN_FACTORY``, else lgpio on a Raspberry Pi);
* ``mock``: gpiozero's :class:`~gpiozero.pins.mock.MockFactory`, wired to nothing (a laptop,
  a demo);
* ``emulated:HOST:PORT``: mock pins whose levels travel to emulated boards' EN and IO0
  (:class:`hw.gpio_wires.WiredPinFactory`, the emulator's end of the wires).

:func:`no_pins` is for gpiozero's internal devices (CPU temperature, disk usage, load
average), which read ``/sys`` and ``/proc`` and use no pin: they need a factory object all
the same, and this one probes no GPIO hardware, so they work on any Linux machine.
"""

from __future__ import annotations

from typing import Any

from gpiozero import Factory
from gpiozero.exc import BadPinFactory
from gpiozero.pins.mock import MockFactory

from gateway.config import PiConfig, parse_bind
from gateway.errors import ConfigError


def pin_factory(pi: PiConfig) -> Any:
    """The factory ``pi.pin_factory`` names; :class:`ConfigError` if none can be had."""
    name = pi.pin_factory
    if name == "mock":
        return MockFactory()
    if name.startswith("emulated:"):
        from hw.gpio_wires import WiredPinFactory

        return WiredPinFactory(parse_bind(name.removeprefix("emulated:")))
    try:
        from gpiozero import Device

        return Device._default_pin_factory()
    except BadPinFactory as exc:
        raise ConfigError(
            f"gateway.pi: no GPIO on this machine ({exc}); remove [gateway.pi], or set"
            ' pin_factory = "mock"'
        ) from None


class _NoPins(Factory):  # type: ignore[misc]
    """A factory with no pins at all (gpiozero's base class answers every pin request with
    an error)."""

    def ticks(self) -> float:
        import time

        return time.monotonic()

    def ticks_diff(self, later: float, earlier: float) -> float:
        return later - earlier


def no_pins() -> Any:
    """A pin factory for devices that use no pin (see the module docstring)."""
    return _NoPins()


__all__ = ["no_pins", "pin_factory"]
