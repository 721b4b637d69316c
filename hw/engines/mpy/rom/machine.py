# mypy: ignore-errors
# (MicroPython code: it runs inside the VM, never on CPython.)
"""The part of ``machine`` a technician reaches for at the REPL (``mpremote reset``), on the
MicroPython VM engine. The firmware itself never imports it: ``board.py`` does on a chip,
``vmboard`` stands in for it here. Every value comes from the host's
``hw/engines/micropython.py``, as the CPython engine's REPL gets it."""

import binascii

import vmboard

_FACTS = vmboard.call("machine")
globals().update(_FACTS["constants"])  # PWRON_RESET, HARD_RESET, ... SOFT_RESET


def reset():
    vmboard.call("reset", "soft")


def soft_reset():
    vmboard.call("reset", "soft")


def reset_cause():
    return _FACTS["reset_cause"]


def freq():
    return _FACTS["freq"]


def unique_id():
    return binascii.unhexlify(_FACTS["unique_id"])
