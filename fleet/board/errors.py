"""What can go wrong between the technician's laptop and a board, each as one line to show.

Every error's message is what a technician on a ladder reads: what happened and what to do.
Each also inherits the builtin a caller would catch (``OSError`` for the port and the
board's flash, ``ValueError`` for refused input).
"""

from __future__ import annotations


class BoardToolError(Exception):
    """Base of every error of ``simpul board``."""


class NoBoard(BoardToolError, OSError):
    """The port does not exist, or nothing answers on it."""


class PortBusy(BoardToolError, OSError):
    """Another program has the serial port open."""


class IgnoresCtrlC(BoardToolError, OSError):
    """The board talks but its program does not stop for Ctrl-C."""


class BytesDropped(BoardToolError, OSError):
    """Bytes were lost on the serial line, even in the smallest pieces."""


class BoardLost(BoardToolError, OSError):
    """The board stopped answering in the middle of an operation (unplugged, reset)."""


class BoardCodeError(BoardToolError, RuntimeError):
    """Code run on the board raised an error; ``board_error`` is its traceback."""

    def __init__(self, message: str, board_error: str) -> None:
        super().__init__(message)
        self.board_error = board_error


class WrongFirmware(BoardToolError, ValueError):
    """The board does not run a MicroPython this tool installs files for."""


class NoSpace(BoardToolError, OSError):
    """The board's flash has no room for the files."""


class VerifyFailed(BoardToolError, OSError):
    """A file on the board does not have the SHA-256 of what was sent."""


class NoBootloader(BoardToolError, OSError):
    """The port offers no ESP32 ROM bootloader for installing MicroPython."""


class EnrolmentRefused(BoardToolError, ValueError):
    """An offline enrolment file that does not verify, or names what the fleet refuses."""


class NotAcknowledged(BoardToolError, TimeoutError):
    """The board booted but the gateway did not acknowledge a reading in time."""
