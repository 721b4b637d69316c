"""The board's filesystem as the firmware sees it: ``board.flash``.

Absolute paths on the chip's mounted filesystem; ``size`` is -1 for a missing file. It uses
only ``open`` and ``os``, so ``boot.py`` can use it before a slot is chosen, and every
board (the chip, the VM engine's) shares it; the CPython engine's ``hw/flash.py`` offers the
same methods over a host directory.
"""

import os


class Flash:
    def open(self, path, mode):
        return open(path, mode)

    def remove(self, path):
        os.remove(path)

    def rename(self, old, new):
        os.rename(old, new)

    def size(self, path):
        try:
            return os.stat(path)[6]
        except OSError:
            return -1

    def listdir(self, path):
        return os.listdir(path)

    def mkdir(self, path):
        try:
            os.mkdir(path)
        except OSError:
            pass
