# mypy: ignore-errors
# (MicroPython code: it runs inside the VM, never on CPython.)
"""The part of ``machine`` a technician reaches for at the REPL (``mpremote reset``), on the
MicroPython VM engine. The firmware itself never imports it: ``board.py`` does on a chip,
``vmboard`` stands in for it here."""

import vmboard

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_CAUSES = {
    "power_on": PWRON_RESET,
    "hard": HARD_RESET,
    "wdt": WDT_RESET,
    "deepsleep": DEEPSLEEP_RESET,
    "soft": SOFT_RESET,
}


def reset():
    vmboard.call("reset", "soft")


def soft_reset():
    vmboard.call("reset", "soft")


def reset_cause():
    return _CAUSES.get(vmboard.call("reset_cause"), PWRON_RESET)


def freq():
    return 240000000


def unique_id():
    return vmboard.call("unique_id").encode()
