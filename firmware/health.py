"""The board's health report: what an operator needs to judge a board from afar.

The report is a CBOR map with text keys, POSTed to the gateway's ``/health``.
"""

import cbor


class Health:
    """Counters the application keeps between reports."""

    def __init__(self, board_id, kind, fw, boot_count, reset_cause):
        self.board_id = board_id
        self.kind = kind
        self.fw = fw
        self.boot_count = boot_count
        self.reset_cause = reset_cause
        self.heap_min = None
        self.battery = None
        # {sensor name: {fault kind: count}}
        self.sensor_errors = {}
        self.samples = 0
        self.uploaded = 0
        self.rejected = 0
        self.flash_errors = 0

    def sensor_fault(self, sensor, kind):
        faults = self.sensor_errors.get(sensor)
        if faults is None:
            faults = self.sensor_errors[sensor] = {}
        faults[kind] = faults.get(kind, 0) + 1

    def heap(self, free):
        if free is not None and (self.heap_min is None or free < self.heap_min):
            self.heap_min = free

    def report(self, board, buffer, uptime_ms, slot, ota):
        """``ota``: where the board stands with releases (``otastate.OtaState.report``)."""
        mem = board.mem()
        free = mem[0] if mem else None
        self.heap(free)
        return {
            "board": self.board_id,
            "kind": self.kind,
            "fw": self.fw,
            "slot": slot,
            "ota": ota,
            "uptime_s": uptime_ms // 1000,
            "boot_count": self.boot_count,
            "reset_cause": self.reset_cause,
            "heap_free": free,
            "heap_min": self.heap_min,
            "rssi": board.rssi(),
            "battery": self.battery,
            "seq": buffer.next_seq - 1,
            "buffered": buffer.pending,
            "dropped": buffer.dropped,
            "torn": buffer.torn,
            "rejected": self.rejected,
            "flash_errors": self.flash_errors,
            "samples": self.samples,
            "sensor_errors": self.sensor_errors,
        }

    def encode(self, board, buffer, uptime_ms, slot, ota):
        return cbor.dumps(self.report(board, buffer, uptime_ms, slot, ota))
