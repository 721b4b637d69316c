"""The CPython engine: every board's firmware in this process, hundreds of boards at once.

- ``runner.py``: the board runner (the firmware as a task in this event loop);
- ``board.py``: the board object the firmware is handed;
- ``repl.py``: REPL code run for one board, with MicroPython's ``os``, ``time``, ``machine``.
"""
