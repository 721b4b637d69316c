"""The MicroPython VM engine: each board's firmware on the real interpreter.

- ``runner.py``: the board runner (one Node process per boot);
- ``host.py``: the host's side of a boot, answering the VM's calls with the board's hardware;
- ``board.mjs``: the Node side, loading the VM and carrying messages;
- ``rom/``: MicroPython modules put beside the firmware in the VM (the board, ``machine``);
- ``vm_package.py``: where the npm package is, and ``--install-vm``.
"""
