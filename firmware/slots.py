"""A/B application slots: which one boots, and when a trial falls back.

``/slots.json`` holds ``{"active": "a", "trial": null, "trial_boots": 0}``. A new release is
written into the inactive slot (``/a/`` or ``/b/``, its compiled ``.mpy`` files) and set as
``trial``; the next boot runs it once. The app confirms it (``confirm``) after its
self-test; a reset before that returns to ``active``. ``boot.py`` calls ``boot`` at every
reset and puts the slot it names first on ``sys.path``. A board fresh from the factory has
slot ``a`` active and empty, so its imports fall through to the factory application (the
modules frozen into its firmware image; ``/rom`` on the emulator's VM engine).

``boot.py``, this module, ``flashfs.py`` and ``main.py`` sit at the filesystem's root, outside both
slots, so that no update can replace the code that chooses what to boot.
"""

import json

# The boot part's version (this file, boot.py, flashfs.py, main.py): OTA never replaces it, so a
# release names the lowest it runs on (its manifest's boot_min) and a board checks it here.
BOOT_VERSION = 1

PATH = "/slots.json"
SLOTS = ("a", "b")


def read(flash, path=PATH):
    try:
        f = flash.open(path, "r")
        try:
            state = json.loads(f.read())
        finally:
            f.close()
    except (OSError, ValueError):
        state = {}
    if state.get("active") not in SLOTS:
        state["active"] = "a"
    if state.get("trial") not in SLOTS or state.get("trial") == state["active"]:
        state["trial"] = None
    state["trial_boots"] = int(state.get("trial_boots") or 0)
    return state


def write(flash, state, path=PATH):
    tmp = path + ".tmp"
    f = flash.open(tmp, "w")
    try:
        f.write(json.dumps(state))
    finally:
        f.close()
    flash.rename(tmp, path)


def choose(state):
    """Return (slot to boot now, state to persist before booting it)."""
    new = dict(state)
    trial = state.get("trial")
    if trial is None:
        return state["active"], new
    if state["trial_boots"] >= 1:
        # The trial slot already had its one boot and never confirmed: fall back.
        new["trial"] = None
        new["trial_boots"] = 0
        return state["active"], new
    new["trial_boots"] = 1
    return trial, new


def boot(flash, path=PATH):
    """Choose the slot to boot now, persist the state that choice leaves, return the slot.

    A power cut during the write leaves the old state (the write goes to a temporary file
    renamed over it), so the next boot chooses again from it.
    """
    state = read(flash, path)
    slot, new = choose(state)
    if new != state:
        write(flash, new, path)
    return slot


def confirm(state):
    """The running trial passed its self-test: make it the active slot."""
    new = dict(state)
    if state.get("trial") is not None:
        new["active"] = state["trial"]
    new["trial"] = None
    new["trial_boots"] = 0
    return new
