# Runs first at every reset: pick the application slot and put it on the import path.
# Lives at the root with slots.py, outside both slots (see slots.py).
import sys

import flashfs
import slots


def _boot():
    files = flashfs.Flash()
    state = slots.read(files)
    slot, new = slots.choose(state)
    if new != state:
        slots.write(files, new)
    sys.path.insert(0, "/" + slot)


_boot()
