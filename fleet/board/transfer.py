"""Files to and from a board over its raw REPL, each checked by SHA-256 computed on the board.

A file is written under a temporary name (``<path>.part``) in pieces, each piece base64 with
its length, so bytes lost on the line are noticed at once (a wrong length, a base64 error, a
syntax error) and that piece is sent again, in smaller pieces after two failures. Once whole,
the board hashes the temporary file itself with ``hashlib``; only a file whose hash is the
one sent is renamed into place (:meth:`Transfer.commit`), so a transfer cut by a pulled
cable or a power cut leaves a ``.part`` file and the old file, never half a new one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from fleet.board.errors import BoardCodeError, BytesDropped, NoSpace, VerifyFailed
from fleet.board.repl import MIN_WRITE, RawRepl

TEMP_SUFFIX: Final = ".part"
#: Bytes of file per piece, largest first; after two lost pieces the next size is used.
PIECE_SIZES: Final = (1024, 512, 256, 128, 64)
TRIES_PER_SIZE: Final = 2
#: LittleFS keeps each file in whole blocks and needs a few for its own metadata.
SPARE_BLOCKS: Final = 4

#: Helpers defined on the board once per session; every name starts ``_simpul``.
_HELPERS: Final = """\
import os, binascii, hashlib
_simpul_f = None
def _simpul_open(p):
    global _simpul_f
    _simpul_f = open(p, 'wb')
def _simpul_w(o, b, n):
    d = binascii.a2b_base64(b)
    if len(d) != n:
        raise ValueError('dropped bytes')
    _simpul_f.seek(o)
    _simpul_f.write(d)
def _simpul_close():
    _simpul_f.close()
def _simpul_sha(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            h.update(b)
    return binascii.hexlify(h.digest()).decode()
def _simpul_mkdirs(p):
    d = ''
    for part in p.split('/')[1:-1]:
        d += '/' + part
        try:
            os.mkdir(d)
        except OSError:
            pass
def _simpul_install(moves):
    for t, p in moves:
        try:
            os.rename(t, p)
        except OSError:
            os.remove(p)
            os.rename(t, p)
def _simpul_read(p, o, n):
    with open(p, 'rb') as f:
        f.seek(o)
        print(binascii.b2a_base64(f.read(n)).decode().strip())
"""

#: (what is happening, bytes done, bytes in all) -> None
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BoardFile:
    """A file to write on the board: its absolute path there and its bytes."""

    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Staged:
    """A file written under its temporary name and verified on the board, not yet in place."""

    path: str
    temp: str
    size: int
    sha256: str


def _no_progress(what: str, done: int, total: int) -> None:
    pass


def blocks_needed(sizes: Sequence[int], block: int) -> int:
    """Filesystem blocks the files take while the old ones still exist beside them."""
    return sum(max(1, math.ceil(size / block)) for size in sizes) + SPARE_BLOCKS


class Transfer:
    """Files over one board's raw REPL (entered already)."""

    def __init__(self, repl: RawRepl, progress: Progress = _no_progress) -> None:
        self.repl = repl
        self.progress = progress
        self.retries = 0  # pieces sent again after bytes were lost
        self._ready = False

    def _exec(self, code: str, *, timeout: float = 10.0, tries: int = 1) -> bytes:
        """Run the tool's own code; an error other than the filesystem's means it arrived
        garbled (:class:`BytesDropped`), as the code itself is known to run."""
        if not self._ready:
            self._ready = True
            try:
                self._exec(_HELPERS, tries=3)
            except BaseException:
                self._ready = False
                raise
        for attempt in range(tries):
            try:
                return self.repl.exec(code, timeout=timeout)
            except BoardCodeError as exc:
                if "ENOSPC" in exc.board_error or "Errno 28" in exc.board_error:
                    raise NoSpace(
                        f"the board's flash on {self.repl.name} is full: the old files are"
                        " left in place; erase the board (--install-micropython) and flash it"
                        " again"
                    ) from None
                if "OSError" in exc.board_error.strip().splitlines()[-1]:
                    raise
                failure = BytesDropped(f"bytes were lost on the line to {self.repl.name}")
            except BytesDropped as exc:
                failure = exc
            self.retries += 1
            # Smaller writes too: a UART that overflows loses less of a short burst.
            self.repl.max_write = max(MIN_WRITE, self.repl.max_write // 2)
            if attempt == tries - 1:
                raise failure
        raise AssertionError("unreachable")

    def check_space(self, files: Sequence[BoardFile]) -> None:
        """:class:`NoSpace` unless the board's filesystem has room for ``files``."""
        answer = self._exec("_s = os.statvfs('/')\nprint(repr((_s[0], _s[4])))")
        block, free_blocks = self.repl.literal(answer)
        needed = blocks_needed([len(f.data) for f in files], block)
        if needed > free_blocks:
            raise NoSpace(
                f"the board's flash on {self.repl.name} has {free_blocks * block // 1024} kB"
                f" free, the files need {needed * block // 1024} kB: nothing was written"
            )

    def stage(self, file: BoardFile) -> Staged:
        """Write ``file`` under its temporary name and check its SHA-256 on the board."""
        temp = file.path + TEMP_SUFFIX
        data = file.data
        self._exec(f"_simpul_mkdirs({file.path!r})\n_simpul_open({temp!r})", tries=3)
        offset, size_at, failed = 0, 0, 0
        self.progress(file.path, 0, len(data))
        while offset < len(data):
            piece = data[offset : offset + PIECE_SIZES[size_at]]
            encoded = base64.b64encode(piece).decode()
            try:
                self._exec(f"_simpul_w({offset},b'{encoded}',{len(piece)})")
            except BytesDropped:
                self.retries += 1
                failed += 1
                if failed >= TRIES_PER_SIZE:
                    failed = 0
                    size_at += 1
                    if size_at == len(PIECE_SIZES):
                        raise BytesDropped(
                            f"bytes keep getting lost on {self.repl.name}, even in"
                            f" {PIECE_SIZES[-1]}-byte pieces: try another USB cable or port"
                        ) from None
                    self.progress(
                        f"bytes lost, sending {file.path} in {PIECE_SIZES[size_at]}-byte pieces",
                        offset,
                        len(data),
                    )
                continue
            offset += len(piece)
            self.progress(file.path, offset, len(data))
        self._exec("_simpul_close()", tries=3)
        on_board = self._sha(temp)
        if on_board != file.sha256:
            self._exec(f"os.remove({temp!r})", tries=3)
            raise VerifyFailed(
                f"{file.path} arrived damaged on {self.repl.name} (SHA-256 {str(on_board)[:12]}"
                f" instead of {file.sha256[:12]}): it was not installed"
            )
        return Staged(file.path, temp, len(data), on_board)

    def _sha(self, path: str) -> str:
        """SHA-256 of ``path``, computed on the board (hex)."""
        for attempt in range(3):
            try:
                answer = self.repl.literal(self._exec(f"print(repr(_simpul_sha({path!r})))"))
            except BytesDropped:
                if attempt == 2:
                    raise
                continue
            if isinstance(answer, str):
                return answer
        raise BytesDropped(f"bytes keep getting lost on {self.repl.name}: try another USB cable")

    def commit(self, staged: Sequence[Staged]) -> None:
        """Rename every verified file into place, in order, in one run on the board."""
        moves = [(s.temp, s.path) for s in staged]
        self._exec(f"_simpul_install({moves!r})", tries=3)

    def put(self, files: Sequence[BoardFile]) -> list[Staged]:
        """Check space, stage every file, then put them all in place."""
        self.check_space(files)
        staged = [self.stage(f) for f in files]
        self.commit(staged)
        return staged

    def get(self, path: str) -> bytes:
        """The bytes of ``path`` on the board, checked against its SHA-256 there."""
        size = self.repl.literal(self._exec(f"print(os.stat({path!r})[6])"))
        data = bytearray()
        while len(data) < size:
            try:
                line = self._exec(f"_simpul_read({path!r},{len(data)},{PIECE_SIZES[1]})")
                data += binascii.a2b_base64(line.strip())
            except (BytesDropped, binascii.Error):
                self.retries += 1
                if self.retries > 20:
                    raise BytesDropped(
                        f"bytes keep getting lost on {self.repl.name}: try another USB cable"
                    ) from None
                continue
            self.progress(path, len(data), size)
        on_board = self._sha(path)
        if hashlib.sha256(data).hexdigest() != on_board:
            raise VerifyFailed(f"{path} came back damaged from {self.repl.name}: try again")
        return bytes(data)
