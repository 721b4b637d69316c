"""The board's flash ring buffer: samples wait here until the gateway acknowledges them.

Usage::

    import ringbuf
    buf = ringbuf.RingBuffer(board.flash, "/data/rb", segment_bytes=4096, segments=8)
    seq = buf.append(part)                  # after each sample
    batch = buf.peek(16, 900)               # [(seq, payload), ...], oldest first
    ...send, and on the gateway's ACK:
    buf.ack(batch[-1][0])

On flash: segment files ``<dir>/NNNNNNNN.seg`` holding records
``[len u16][seq u32][crc32 u32 over len+seq+payload][payload]`` (big-endian), and
``<dir>/state`` (written as ``state.tmp``, then renamed) holding the last acknowledged seq,
the dropped count and the *floor*: every seq at or below it is settled (delivered or
dropped), so a power cut between writing the state and removing a segment never counts a
record twice. Replacing a file is always "write ``X.tmp`` in full, rename over ``X``"; at
open a leftover ``X.tmp`` is discarded if ``X`` exists and put in its place if not.

Sequence numbers start at 1, increase by one per record and are never reused: after a reset
the next is one above the highest seq on flash (a torn record's included, so one that may
have been sent is never given to another) and the floor. Within a segment they are
consecutive, which lets the buffer keep only ``[number, first seq, count,
end offset]`` per segment in RAM and read payloads one record at a time.
"""

import binascii
import struct

try:
    from micropython import const
except ImportError:

    def const(x):  # type: ignore[misc]  # CPython: const is the identity
        return x


_HEAD = const(10)
_MAX_PAYLOAD = const(0xFFFF)
_COPY_CHUNK = const(256)
_ENOSPC = const(28)
_SEQ_SLACK = const(0x10000)  # how far past the expected seq a torn header's seq is believed
_STATE_MAGIC = b"SRB1"
_STATE_LEN = const(20)  # magic, acked, dropped, floor, crc32

# Indexes into a segment entry [number, first seq, count, end offset].
_NUM = const(0)
_FIRST = const(1)
_COUNT = const(2)
_END = const(3)


def _crc(head6, payload):
    return binascii.crc32(payload, binascii.crc32(head6)) & 0xFFFFFFFF


class RingBuffer:
    def __init__(self, flash, directory, segment_bytes=4096, segments=8):
        if segment_bytes <= _HEAD or segments < 1:
            raise ValueError("ring buffer too small")
        self._flash = flash
        self._dir = directory.rstrip("/")
        self._segment_bytes = segment_bytes
        self._max_segments = segments
        self._segs = []
        self._acked = 0
        self._dropped = 0
        self._floor = 0
        self._torn = 0
        self._bad_seq = 0
        self._next_seq = 1
        self._next_num = 1
        self._sealed = False  # the newest segment has a failed write at its end
        self._open()

    # --- what the application reads -----------------------------------------------------

    @property
    def pending(self):
        """Records appended and neither acknowledged nor dropped."""
        return sum(seg[_COUNT] - self._settled_in(seg) for seg in self._segs)

    @property
    def dropped(self):
        """Records lost because the buffer was full (persisted)."""
        return self._dropped

    @property
    def torn(self):
        """Records found corrupt or half-written since this buffer was opened."""
        return self._torn

    @property
    def acked(self):
        """The highest sequence number the gateway acknowledged (persisted)."""
        return self._acked

    @property
    def next_seq(self):
        return self._next_seq

    # --- operations -----------------------------------------------------------------------

    def append(self, payload):
        """Store one record; its sequence number. OSError (flash full) leaves nothing behind
        that a later open would deliver."""
        n = len(payload)
        if n > _MAX_PAYLOAD or _HEAD + n > self._segment_bytes:
            raise ValueError("record of %d bytes does not fit a segment" % n)
        seq = self._next_seq
        head6 = struct.pack(">HI", n, seq)
        record = head6 + struct.pack(">I", _crc(head6, payload)) + bytes(payload)
        cur = self._segs[-1] if self._segs and not self._sealed else None
        # Seqs within a segment are consecutive; after a torn record the next one skips it.
        if (
            cur is None
            or cur[_END] + len(record) > self._segment_bytes
            or cur[_FIRST] + cur[_COUNT] != seq
        ):
            while len(self._segs) >= self._max_segments:
                self._drop_oldest()
            cur = [self._next_num, seq, 0, 0]
            self._next_num += 1
            new = True
        else:
            new = False
        path = self._seg_path(cur[_NUM])
        try:
            with self._flash.open(path, "ab") as f:
                written = f.write(record)
            if written is not None and written != len(record):
                raise OSError(_ENOSPC)
        except OSError:
            if new:
                self._remove_quietly(path)
            else:
                # The tail of this segment may hold half a record: never append after it.
                self._sealed = True
            raise
        if new:
            self._segs.append(cur)
            self._sealed = False
        cur[_COUNT] += 1
        cur[_END] += len(record)
        self._next_seq = seq + 1
        return seq

    def peek(self, max_records, max_bytes):
        """Up to ``max_records`` pending ``(seq, payload)``, oldest first, with at most
        ``max_bytes`` of payload in all, but at least one record if any is pending."""
        out = []  # type: list[tuple[int, bytes]]
        total = 0
        for seg in list(self._segs):
            if len(out) >= max_records:
                break
            if self._settled_in(seg) == seg[_COUNT]:
                continue
            with self._flash.open(self._seg_path(seg[_NUM]), "rb") as f:
                off = 0
                expect = seg[_FIRST]
                while off < seg[_END] and len(out) < max_records:
                    head = f.read(_HEAD)
                    if len(head) < _HEAD:
                        self._count_bad(expect)
                        break
                    n, seq, crc = struct.unpack(">HII", head)
                    if seq != expect or off + _HEAD + n > seg[_END]:
                        # The header itself changed since it was checked: nothing after it
                        # in this segment can be located.
                        self._count_bad(expect)
                        break
                    off += _HEAD + n
                    expect += 1
                    if seq <= self._floor:
                        f.seek(off)
                        continue
                    if out and total + n > max_bytes:
                        return out
                    payload = f.read(n)
                    if len(payload) != n or _crc(head[:6], payload) != crc:
                        self._count_bad(seq)
                        f.seek(off)
                        continue
                    out.append((seq, payload))
                    total += n
        return out

    def ack(self, seq):
        """The gateway holds every record up to ``seq``: persist that, free their segments."""
        seq = min(seq, self._next_seq - 1)
        if seq <= self._acked and seq <= self._floor:
            return
        acked = max(self._acked, seq)
        floor = max(self._floor, seq)
        self._write_state(acked, self._dropped, floor)
        self._acked = acked
        self._floor = floor
        while self._segs and self._settled_in(self._segs[0]) == self._segs[0][_COUNT]:
            self._remove_quietly(self._seg_path(self._segs.pop(0)[_NUM]))
        if not self._segs:
            self._sealed = False

    # --- internals ------------------------------------------------------------------------

    def _settled_in(self, seg):
        """How many of a segment's records are at or below the floor."""
        return min(seg[_COUNT], max(0, self._floor - seg[_FIRST] + 1))

    def _count_bad(self, seq):
        if seq > self._bad_seq:
            self._bad_seq = seq
            self._torn += 1

    def _seg_path(self, num):
        return "%s/%08d.seg" % (self._dir, num)

    def _remove_quietly(self, path):
        try:
            self._flash.remove(path)
        except OSError:
            pass  # a leftover is settled or torn, and the next open removes it

    def _drop_oldest(self):
        seg = self._segs[0]
        lost = seg[_COUNT] - self._settled_in(seg)
        floor = max(self._floor, seg[_FIRST] + seg[_COUNT] - 1)
        if floor != self._floor:
            self._write_state(self._acked, self._dropped + lost, floor)
            self._dropped += lost
            self._floor = floor
        self._segs.pop(0)
        self._remove_quietly(self._seg_path(seg[_NUM]))

    def _replace(self, tmp, path):
        try:
            self._flash.rename(tmp, path)
        except OSError:
            # A filesystem whose rename does not replace; open() recovers from a cut here.
            self._remove_quietly(path)
            self._flash.rename(tmp, path)

    def _write_state(self, acked, dropped, floor):
        body = _STATE_MAGIC + struct.pack(">III", acked, dropped, floor)
        data = body + struct.pack(">I", binascii.crc32(body) & 0xFFFFFFFF)
        tmp = self._dir + "/state.tmp"
        try:
            with self._flash.open(tmp, "wb") as f:
                written = f.write(data)
            if written is not None and written != len(data):
                raise OSError(_ENOSPC)
        except OSError:
            self._remove_quietly(tmp)
            raise
        self._replace(tmp, self._dir + "/state")

    def _read_state(self, path):
        if self._flash.size(path) != _STATE_LEN:
            return None
        with self._flash.open(path, "rb") as f:
            data = f.read(_STATE_LEN)
        if len(data) != _STATE_LEN or data[:4] != _STATE_MAGIC:
            return None
        if struct.unpack(">I", data[16:])[0] != binascii.crc32(data[:16]) & 0xFFFFFFFF:
            return None
        return struct.unpack(">III", data[4:16])

    def _open(self):
        path = ""
        for part in self._dir.split("/")[1:]:
            path += "/" + part
            try:
                self._flash.mkdir(path)
            except OSError:
                pass  # already there
        names = self._flash.listdir(self._dir)
        # Finish or discard interrupted replacements.
        for name in names:
            if name.endswith(".tmp"):
                stem = name[:-4]
                final = stem if stem == "state" else stem + ".seg"
                tmp = self._dir + "/" + name
                if final in names or (stem == "state" and self._read_state(tmp) is None):
                    self._remove_quietly(tmp)
                else:
                    self._flash.rename(tmp, self._dir + "/" + final)
                    names.append(final)
        state = self._read_state(self._dir + "/state")
        if state is not None:
            self._acked, self._dropped, self._floor = state
        nums = []
        for name in names:
            if name.endswith(".seg") and len(name) == 12 and name[:8].isdigit():
                nums.append(int(name[:8]))
        nums.sort()
        last = 0
        top = 0  # the highest seq seen on flash, torn records' included
        for num in nums:
            first, count, end, bad_seq = self._scan(num, last)
            path = self._seg_path(num)
            if count:
                last = first + count - 1
            top = max(top, last, bad_seq)
            if bad_seq:
                self._torn += 1
            if count == 0 or last <= self._floor:
                self._remove_quietly(path)
                continue
            if bad_seq:
                self._truncate(path, end)
            self._segs.append([num, first, count, end])
        self._next_seq = max(top, self._floor, self._acked) + 1
        if nums:
            self._next_num = nums[-1] + 1

    def _scan(self, num, prev_seq):
        """(first seq, count, end of the last good record, seq of the bad record after it or
        0). A bad record's seq is its header's when that is plausible, so that a record that
        may have been sent before it rotted never has its seq reused."""
        path = self._seg_path(num)
        size = self._flash.size(path)
        first = 0
        count = 0
        off = 0
        with self._flash.open(path, "rb") as f:
            while off < size:
                expect = first + count if count else prev_seq + 1
                head = f.read(_HEAD)
                if len(head) < _HEAD:
                    return first, count, off, expect
                n, seq, crc = struct.unpack(">HII", head)
                bad_seq = seq if expect <= seq <= expect + _SEQ_SLACK else expect
                if off + _HEAD + n > size:
                    return first, count, off, bad_seq
                if seq < expect or (count and seq != expect):
                    return first, count, off, bad_seq
                payload = f.read(n)
                if len(payload) != n or _crc(head[:6], payload) != crc:
                    return first, count, off, bad_seq
                if not count:
                    first = seq
                count += 1
                off += _HEAD + n
        return first, count, off, 0

    def _truncate(self, path, end):
        """Rewrite a segment up to ``end`` (its last good record) through a tmp file."""
        tmp = path[:-4] + ".tmp"
        with self._flash.open(path, "rb") as src, self._flash.open(tmp, "wb") as dst:
            left = end
            while left:
                chunk = src.read(min(left, _COPY_CHUNK))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)
        self._replace(tmp, path)
