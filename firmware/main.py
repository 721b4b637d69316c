# Runs after boot.py on the board: the application with the real hardware.
import asyncio

import app
import board
import config

asyncio.run(app.main(board.Board(config.load(board.Flash()))))
