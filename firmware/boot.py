# Runs first at every reset: pick the application slot and put it on the import path.
# Lives at the root with slots.py, outside both slots (see slots.py).
import sys

import flashfs
import slots

sys.path.insert(0, "/" + slots.boot(flashfs.Flash()))
