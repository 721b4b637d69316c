"""The ring buffer under a power cut at every flash write (hw.flash tears the write in half).

After each cut the board reopens its buffer: it must never deliver a record it did not write
whole, never deliver again what the gateway's acknowledgement covered (once that ack
returned), lose nothing it confirmed unless counted as dropped, and never reuse a seq.
"""

from pathlib import Path

import pytest
import ringbuf

from hw.flash import Flash, FlashFaults, PowerCut

DIR = "/data/rb"
SEGMENT_BYTES = 96
SEGMENTS = 3


def payload(i: int) -> bytes:
    return (f"r{i:04d}-" * 8).encode()[: 8 + (i * 7) % 30]


class Journal:
    """What the application saw: appends and acks that returned, and the op in flight."""

    def __init__(self) -> None:
        self.written: dict[int, bytes] = {}
        self.acked = 0
        self.in_flight: tuple[int, bytes] | None = None


def workload(buf: ringbuf.RingBuffer, journal: Journal) -> None:
    for i in range(1, 41):
        body = payload(i)
        journal.in_flight = (buf.next_seq, body)
        seq = buf.append(body)
        journal.written[seq] = body
        journal.in_flight = None
        if i % 4 == 0:
            batch = buf.peek(3, 200)
            if batch:
                buf.ack(batch[-1][0])
                journal.acked = batch[-1][0]


@pytest.fixture(scope="module")
def total_writes(tmp_path_factory: pytest.TempPathFactory) -> int:
    flash = Flash(tmp_path_factory.mktemp("count"))
    workload(ringbuf.RingBuffer(flash, DIR, SEGMENT_BYTES, SEGMENTS), Journal())
    return flash.writes


def test_workload_rotates_drops_and_acks(tmp_path: Path) -> None:
    flash = Flash(tmp_path)
    buf = ringbuf.RingBuffer(flash, DIR, SEGMENT_BYTES, SEGMENTS)
    workload(buf, Journal())
    assert buf.dropped > 0
    assert buf.acked > 0
    assert buf.pending > 0


def check_recovered(root: Path, journal: Journal, label: str) -> None:
    buf = ringbuf.RingBuffer(Flash(root), DIR, SEGMENT_BYTES, SEGMENTS)
    delivered = buf.peek(10**6, 10**9)
    seqs = [seq for seq, _ in delivered]
    assert seqs == sorted(set(seqs)), f"{label}: order {seqs}"
    for seq, body in delivered:
        whole = journal.written.get(seq)
        if whole is None and journal.in_flight is not None:
            whole = journal.in_flight[1] if seq == journal.in_flight[0] else None
        assert body == whole, f"{label}: seq {seq} delivered {body!r}, wrote {whole!r}"
        assert seq > journal.acked, f"{label}: seq {seq} delivered after its ack"
    confirmed = {s for s in journal.written if s > journal.acked}
    missing = confirmed - set(seqs)
    assert len(missing) <= buf.dropped, f"{label}: lost {sorted(missing)} uncounted"
    if journal.written:
        assert buf.next_seq > max(journal.written), f"{label}: seq reused"
    assert buf.pending == len(delivered)

    # The board carries on: a new record follows, and the next open finds nothing torn.
    new = buf.append(b"after the cut")
    again = ringbuf.RingBuffer(Flash(root), DIR, SEGMENT_BYTES, SEGMENTS)
    assert again.torn == 0, label
    assert again.peek(10**6, 10**9)[-1] == (new, b"after the cut")


def cut_workload(root: Path, cut: int) -> Journal:
    journal = Journal()
    flash = Flash(root, FlashFaults(cut_at_write=cut))
    with pytest.raises(PowerCut):
        workload(ringbuf.RingBuffer(flash, DIR, SEGMENT_BYTES, SEGMENTS), journal)
    return journal


def test_power_cut_at_every_write(tmp_path: Path, total_writes: int) -> None:
    assert total_writes > 40
    for cut in range(1, total_writes + 1):
        root = tmp_path / f"cut{cut}"
        journal = cut_workload(root, cut)
        check_recovered(root, journal, f"cut {cut}")


def test_power_cut_again_while_repairing(tmp_path: Path, total_writes: int) -> None:
    repairs = 0
    for cut in range(1, total_writes + 1):
        root = tmp_path / f"cut{cut}"
        journal = cut_workload(root, cut)
        # The open that repairs the torn segment loses power at its first write.
        try:
            ringbuf.RingBuffer(
                Flash(root, FlashFaults(cut_at_write=1)), DIR, SEGMENT_BYTES, SEGMENTS
            )
        except PowerCut:
            repairs += 1
        check_recovered(root, journal, f"cut {cut} then in repair")
    assert repairs > 0
