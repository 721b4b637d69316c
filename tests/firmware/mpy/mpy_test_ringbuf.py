# ruff: noqa: SIM105, UP031 - MicroPython has no pytest or contextlib; %-format is its idiom
"""ringbuf.py over a real filesystem (a tmp dir on CPython, MEMFS on the MicroPython VM).

The flash here is the board's interface (firmware/board.py) over a directory; ``FullFlash``
makes writes fail as a full filesystem does.
"""

import binascii
import os
import struct
import sys

import ringbuf

DIR = "/rb"
_ENOSPC = 28


def fresh_root() -> str:
    """An empty directory of its own: a tmp dir on CPython, one in the VM's MEMFS."""
    if sys.implementation.name != "micropython":
        import tempfile

        return tempfile.mkdtemp(prefix="simpul-flash-")
    n = 0
    while True:
        path = "/flash%d" % n
        try:
            os.mkdir(path)
            return path
        except OSError:
            n += 1


class OsFlash:
    """Absolute board paths below ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root

    def host(self, path: str) -> str:
        return self.root + path

    def open(self, path: str, mode: str) -> object:
        return open(self.host(path), mode)

    def remove(self, path: str) -> None:
        os.remove(self.host(path))

    def rename(self, old: str, new: str) -> None:
        os.rename(self.host(old), self.host(new))

    def size(self, path: str) -> int:
        try:
            return os.stat(self.host(path))[6]
        except OSError:
            return -1

    def listdir(self, path: str) -> list[str]:
        return os.listdir(self.host(path))

    def mkdir(self, path: str) -> None:
        try:
            os.mkdir(self.host(path))
        except OSError:
            pass

    def read(self, path: str) -> bytes:
        with open(self.host(path), "rb") as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        with open(self.host(path), "wb") as f:
            f.write(data)


class _FullFile:
    def __init__(self, flash: "FullFlash", raw: object) -> None:
        self._flash = flash
        self._raw = raw

    def write(self, data: bytes) -> int:
        room = self._flash.room
        if room is not None and len(data) > room:
            # What fits reaches the flash, then the filesystem is full.
            self._raw.write(data[:room])  # type: ignore[attr-defined]
            self._flash.room = 0
            raise OSError(_ENOSPC)
        if room is not None:
            self._flash.room = room - len(data)
        return self._raw.write(data)  # type: ignore[attr-defined,no-any-return]

    def read(self, n: int = -1) -> bytes:
        return self._raw.read(n)  # type: ignore[attr-defined,no-any-return]

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self._raw.close()  # type: ignore[attr-defined]

    def __enter__(self) -> "_FullFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FullFlash(OsFlash):
    """``room`` bytes may still be written (None: no limit); the write that passes it stores
    what fits and raises OSError(ENOSPC)."""

    def __init__(self, root: str, room: int | None = None) -> None:
        super().__init__(root)
        self.room = room

    def open(self, path: str, mode: str) -> object:
        return _FullFile(self, open(self.host(path), mode))


def _flash() -> OsFlash:
    return OsFlash(fresh_root())


def _open(flash: OsFlash, **kw: int) -> ringbuf.RingBuffer:
    return ringbuf.RingBuffer(flash, DIR, **kw)


def _payload(seq: int, size: int = 20) -> bytes:
    return (("%08d" % seq).encode() + b"." * size)[:size]


def _segments(flash: OsFlash) -> list[str]:
    return sorted(n for n in flash.listdir(DIR) if n.endswith(".seg"))


def _all_pending(buf: ringbuf.RingBuffer) -> list[tuple[int, bytes]]:
    return list(buf.peek(100000, 10**9))


def test_append_assigns_seq_from_one_and_peek_returns_oldest_first() -> None:
    buf = _open(_flash())
    assert buf.next_seq == 1
    assert buf.pending == 0
    assert buf.peek(10, 1000) == []
    assert [buf.append(_payload(i)) for i in (1, 2, 3)] == [1, 2, 3]
    assert buf.pending == 3
    assert buf.peek(10, 1000) == [(1, _payload(1)), (2, _payload(2)), (3, _payload(3))]
    assert buf.peek(2, 1000) == [(1, _payload(1)), (2, _payload(2))]


def test_records_survive_reopen() -> None:
    flash = _flash()
    buf = _open(flash)
    for i in range(1, 6):
        buf.append(_payload(i))
    again = _open(flash)
    assert again.pending == 5
    assert again.torn == 0
    assert _all_pending(again) == [(i, _payload(i)) for i in range(1, 6)]
    assert again.append(b"next") == 6


def test_ack_removes_records_and_persists() -> None:
    flash = _flash()
    buf = _open(flash)
    for i in range(1, 6):
        buf.append(_payload(i))
    buf.ack(3)
    assert buf.pending == 2
    assert buf.acked == 3
    assert [s for s, _ in buf.peek(10, 1000)] == [4, 5]
    again = _open(flash)
    assert again.pending == 2
    assert again.acked == 3
    assert [s for s, _ in again.peek(10, 1000)] == [4, 5]


def test_ack_beyond_last_seq_is_clamped() -> None:
    buf = _open(_flash())
    buf.append(b"a")
    buf.ack(1000)
    assert buf.acked == 1
    assert buf.pending == 0
    assert buf.append(b"b") == 2
    assert buf.peek(10, 100) == [(2, b"b")]


def test_seq_never_reused_after_everything_acked_and_reopen() -> None:
    flash = _flash()
    buf = _open(flash)
    for i in range(1, 4):
        buf.append(_payload(i))
    buf.ack(3)
    assert _segments(flash) == []  # fully acknowledged segments are removed
    again = _open(flash)
    assert again.next_seq == 4
    assert again.pending == 0
    assert again.append(b"x") == 4


def test_fully_acked_segments_removed_others_kept() -> None:
    flash = _flash()
    buf = _open(flash, segment_bytes=100, segments=8)  # 3 records of 30 bytes per segment
    for i in range(1, 10):
        buf.append(_payload(i))
    assert len(_segments(flash)) == 3
    buf.ack(4)
    assert len(_segments(flash)) == 2
    assert [s for s, _ in _all_pending(buf)] == [5, 6, 7, 8, 9]


def test_peek_respects_byte_bound_but_always_gives_one() -> None:
    buf = _open(_flash())
    for i in range(1, 6):
        buf.append(_payload(i, 100))
    assert [s for s, _ in buf.peek(10, 250)] == [1, 2]
    assert [s for s, _ in buf.peek(10, 300)] == [1, 2, 3]
    assert [s for s, _ in buf.peek(10, 50)] == [1]
    buf.ack(1)
    assert [s for s, _ in buf.peek(10, 0)] == [2]


def test_peek_spans_segments() -> None:
    buf = _open(_flash(), segment_bytes=64, segments=8)
    for i in range(1, 8):
        buf.append(_payload(i))
    assert [s for s, _ in buf.peek(5, 1000)] == [1, 2, 3, 4, 5]
    buf.ack(2)
    assert [s for s, _ in buf.peek(10, 1000)] == [3, 4, 5, 6, 7]


def test_new_segment_when_current_would_overflow() -> None:
    flash = _flash()
    buf = _open(flash, segment_bytes=64, segments=8)
    buf.append(_payload(1))  # 30 bytes
    buf.append(_payload(2))  # 60 bytes: fits
    assert len(_segments(flash)) == 1
    buf.append(_payload(3))  # would make 90
    names = _segments(flash)
    assert len(names) == 2
    assert flash.size(DIR + "/" + names[0]) == 60
    assert flash.size(DIR + "/" + names[1]) == 30
    assert names[0][:8].isdigit()
    assert int(names[1][:8]) > int(names[0][:8])


def test_record_too_big_for_a_segment_is_refused() -> None:
    buf = _open(_flash(), segment_bytes=64, segments=2)
    try:
        buf.append(b"x" * 60)
    except ValueError:
        pass
    else:
        raise AssertionError("appended a record larger than a segment")
    assert buf.append(b"x" * 54) == 1


def test_full_buffer_drops_oldest_segment_and_counts_it() -> None:
    flash = _flash()
    buf = _open(flash, segment_bytes=64, segments=3)  # 2 records per segment, 6 in all
    for i in range(1, 7):
        buf.append(_payload(i))
    assert buf.dropped == 0
    assert len(_segments(flash)) == 3
    buf.append(_payload(7))
    assert buf.dropped == 2
    assert len(_segments(flash)) == 3
    assert [s for s, _ in _all_pending(buf)] == [3, 4, 5, 6, 7]
    assert buf.pending == 5
    again = _open(flash, segment_bytes=64, segments=3)
    assert again.dropped == 2
    assert again.pending == 5
    assert [s for s, _ in _all_pending(again)] == [3, 4, 5, 6, 7]
    assert again.append(b"z") == 8


def test_drop_counts_only_unacknowledged_records() -> None:
    buf = _open(_flash(), segment_bytes=64, segments=2)
    for i in range(1, 4):
        buf.append(_payload(i))
    buf.ack(1)  # segment 1 holds 1 (acked) and 2
    buf.append(_payload(4))
    buf.append(_payload(5))  # needs a third segment: drops the one with 1 and 2
    assert buf.dropped == 1
    assert [s for s, _ in _all_pending(buf)] == [3, 4, 5]


def _last_record_cut(cut: int) -> None:
    flash = _flash()
    buf = _open(flash, segment_bytes=4096)
    for i in range(1, 4):
        buf.append(_payload(i))
    path = DIR + "/" + _segments(flash)[0]
    whole = flash.read(path)
    start = 2 * 30
    flash.write(path, whole[: start + cut])
    again = _open(flash)
    assert again.torn == (1 if cut else 0), (cut, again.torn)
    assert _all_pending(again) == [(1, _payload(1)), (2, _payload(2))], cut
    assert flash.size(path) == start, "torn tail not truncated at cut %d" % cut
    seq = again.append(b"new")
    assert seq >= 3, seq
    assert cut == 0 or seq > 3, "seq %d reused after cut %d" % (seq, cut)
    third = _open(flash)
    assert third.torn == 0
    assert _all_pending(third) == [(1, _payload(1)), (2, _payload(2)), (seq, b"new")]


def test_torn_last_record_at_every_byte_is_never_delivered() -> None:
    for cut in range(30):
        _last_record_cut(cut)


def _flip(flash: OsFlash, path: str, offset: int) -> None:
    data = bytearray(flash.read(path))
    data[offset] ^= 0x40
    flash.write(path, bytes(data))


def test_corrupt_byte_in_last_record_is_detected() -> None:
    for offset in range(60, 90):  # header and payload of the third record
        flash = _flash()
        buf = _open(flash)
        for i in range(1, 4):
            buf.append(_payload(i))
        _flip(flash, DIR + "/" + _segments(flash)[0], offset)
        again = _open(flash)
        assert again.torn == 1, offset
        assert _all_pending(again) == [(1, _payload(1)), (2, _payload(2))], offset


def test_corrupt_record_mid_segment_stops_that_segment_only() -> None:
    flash = _flash()
    buf = _open(flash, segment_bytes=100, segments=8)  # 3 records per segment
    for i in range(1, 8):
        buf.append(_payload(i))
    first = DIR + "/" + _segments(flash)[0]
    _flip(flash, first, 30 + 15)  # payload of record 2
    again = _open(flash, segment_bytes=100, segments=8)
    assert again.torn == 1
    assert [s for s, _ in _all_pending(again)] == [1, 4, 5, 6, 7]
    for seq, payload in _all_pending(again):
        assert payload == _payload(seq)


def test_corruption_after_open_is_not_delivered() -> None:
    flash = _flash()
    buf = _open(flash)
    for i in range(1, 4):
        buf.append(_payload(i))
    _flip(flash, DIR + "/" + _segments(flash)[0], 30 + 12)
    assert [s for s, _ in buf.peek(10, 1000)] == [1, 3]
    assert buf.torn == 1
    buf.peek(10, 1000)
    assert buf.torn == 1  # counted once


def test_leftover_tmp_files_are_resolved_at_open() -> None:
    flash = _flash()
    buf = _open(flash)
    buf.append(b"one")
    buf.ack(1)
    buf.append(b"two")
    flash.write(DIR + "/state.tmp", b"half a state")
    seg = _segments(flash)[0]
    flash.write(DIR + "/" + seg[:8] + ".tmp", b"garbage")
    again = _open(flash)
    assert again.acked == 1
    assert again.peek(10, 100) == [(2, b"two")]
    assert sorted(flash.listdir(DIR)) == [seg, "state"]


def test_complete_state_tmp_without_state_is_used() -> None:
    flash = _flash()
    buf = _open(flash)
    for i in range(1, 4):
        buf.append(_payload(i))
    buf.ack(2)
    flash.rename(DIR + "/state", DIR + "/state.tmp")  # a cut between remove and rename
    again = _open(flash)
    assert again.acked == 2
    assert [s for s, _ in again.peek(10, 1000)] == [3]


def test_record_layout_on_flash() -> None:
    flash = _flash()
    buf = _open(flash)
    buf.append(b"hello")
    raw = flash.read(DIR + "/" + _segments(flash)[0])
    n, seq, crc = struct.unpack(">HII", raw[:10])
    assert (n, seq, raw[10:]) == (5, 1, b"hello")
    assert crc == binascii.crc32(raw[:6] + b"hello") & 0xFFFFFFFF


def test_full_flash_on_append_raises_and_leaves_no_record() -> None:
    root = fresh_root()
    flash = FullFlash(root)
    buf = ringbuf.RingBuffer(flash, DIR)
    buf.append(_payload(1))
    buf.append(_payload(2))
    flash.room = 15  # half of the next record fits
    try:
        buf.append(_payload(3))
    except OSError:
        pass
    else:
        raise AssertionError("append on a full flash did not raise")
    assert buf.pending == 2
    assert [s for s, _ in buf.peek(10, 1000)] == [1, 2]
    flash.room = None
    seq = buf.append(_payload(4))
    assert [s for s, _ in buf.peek(10, 1000)] == [1, 2, seq]
    again = ringbuf.RingBuffer(OsFlash(root), DIR)
    assert [s for s, _ in _all_pending(again)] == [1, 2, seq]
    for s, payload in _all_pending(again):
        assert payload == _payload(4 if s == seq else s)


def test_full_flash_on_ack_keeps_old_state() -> None:
    root = fresh_root()
    flash = FullFlash(root)
    buf = ringbuf.RingBuffer(flash, DIR)
    for i in range(1, 4):
        buf.append(_payload(i))
    buf.ack(1)
    flash.room = 3
    try:
        buf.ack(3)
    except OSError:
        pass
    else:
        raise AssertionError("ack on a full flash did not raise")
    assert buf.acked == 1
    assert buf.pending == 2
    again = ringbuf.RingBuffer(OsFlash(root), DIR)
    assert again.acked == 1
    assert [s for s, _ in again.peek(10, 1000)] == [2, 3]


def test_full_flash_while_dropping_keeps_dropped_count_honest() -> None:
    root = fresh_root()
    flash = FullFlash(root)
    buf = ringbuf.RingBuffer(flash, DIR, segment_bytes=64, segments=2)
    for i in range(1, 5):
        buf.append(_payload(i))
    flash.room = 0
    try:
        buf.append(_payload(5))
    except OSError:
        pass
    else:
        raise AssertionError("append on a full flash did not raise")
    assert buf.dropped == 0
    assert buf.pending == 4
    again = ringbuf.RingBuffer(OsFlash(root), DIR, segment_bytes=64, segments=2)
    assert again.dropped == 0
    assert [s for s, _ in _all_pending(again)] == [1, 2, 3, 4]


def test_torn_first_record_of_a_new_segment_then_append() -> None:
    flash = _flash()
    buf = _open(flash, segment_bytes=64, segments=4)
    for i in range(1, 4):
        buf.append(_payload(i))  # 1 and 2 in the first segment, 3 alone in the second
    names = _segments(flash)
    second = DIR + "/" + names[1]
    flash.write(second, flash.read(second)[:12])  # only 3's header reached the flash
    again = _open(flash, segment_bytes=64, segments=4)
    assert again.torn == 1
    assert _segments(flash) == names[:1]
    seq = again.append(b"next")
    assert seq == 4  # 3 may have been sent before it tore: never given to another record
    third = _open(flash, segment_bytes=64, segments=4)
    assert third.torn == 0
    assert [s for s, _ in _all_pending(third)] == [1, 2, 4]
