"""The sensor node: sample, buffer in flash, upload on acknowledgement, report health.

Two tasks share the ring buffer: the *sampler* wakes every ``interval_s``, reads the sensors,
appends one record and feeds the watchdog; the *uploader* sends what is buffered as
SenML-CBOR in confirmable POSTs and releases records only on the gateway's 2.04, so the
sampler keeps going while the gateway is away. The serial console gets one line per event:

    S <seq> <time_ms> <readings>    a sample was buffered
    A <first> <last>                the gateway acknowledged records first..last
    R <seq> <code>                  the gateway refused a record for good (counted)
    E <sensor> <kind> <message>     a sensor fault (counted)
"""

import asyncio

import coap
import coapclient
import health
import ringbuf
import senml
import slots
from errors import CoapRefused, CoapTimeout, SensorError

VERSION = "0.1.0"
BUFFER_DIR = "/data/buf"
BOOTS_PATH = "/data/boots"
MAX_BATCH_RECORDS = 64


def make_sensors(kind, board, cfg):
    """The drivers fitted to a node of this kind, each on the bus the board gives it."""
    import battery

    sensors: list = []
    if kind in ("air", "water"):
        import bme280

        sensors.append(bme280.BME280(board.bus("i2c")))
    if kind == "air":
        import pms5003

        sensors.append(pms5003.PMS5003(board.bus("pms")))
    if kind == "water":
        import jsnsr04t

        sensors.append(jsnsr04t.JSNSR04T(board.bus("sonar"), mount_mm=cfg["mount_mm"]))
    if kind == "bin":
        import jsnsr04t

        sensors.append(jsnsr04t.JSNSR04T(board.bus("sonar"), bin_depth_mm=cfg["bin_depth_mm"]))
    sensors.append(battery.Battery(board.bus("vbat")))
    return sensors


def count_boot(flash):
    """Increment and return the persistent boot counter."""
    flash.mkdir("/data")
    boots = 0
    try:
        f = flash.open(BOOTS_PATH, "r")
        try:
            boots = int(f.read() or 0)
        finally:
            f.close()
    except (OSError, ValueError):
        pass
    boots += 1
    try:
        f = flash.open(BOOTS_PATH + ".tmp", "w")
        try:
            f.write(str(boots))
        finally:
            f.close()
        # Renamed into place, so a power cut mid-write never loses the count.
        flash.rename(BOOTS_PATH + ".tmp", BOOTS_PATH)
    except OSError:
        pass
    return boots


class Node:
    def __init__(self, board, cfg, sensors=None):
        self.board = board
        self.cfg = cfg
        flash = board.flash
        flash.mkdir("/data")
        flash.mkdir(BUFFER_DIR)
        self.buffer = ringbuf.RingBuffer(
            flash, BUFFER_DIR, cfg["buffer_segment_bytes"], cfg["buffer_segments"]
        )
        self.sensors = sensors if sensors is not None else make_sensors(cfg["kind"], board, cfg)
        self.base_name = "urn:dev:simpul:" + cfg["board_id"] + ":"
        state = slots.read(flash)
        self.slot = state["trial"] if state["trial"] and state["trial_boots"] else state["active"]
        self.health = health.Health(
            cfg["board_id"], VERSION, count_boot(flash), board.reset_cause()
        )
        self.started = board.ticks_ms()
        self.cycle = 0
        self._due = asyncio.Event()
        self._health_due = True
        self._batch_limit = cfg["batch_bytes"]
        self.client = coapclient.Client(
            board,
            board.udp(cfg["gateway_host"], cfg["gateway_port"]),
            cfg["coap_ack_timeout_ms"],
            cfg["coap_max_retransmit"],
        )

    # -- sampling --------------------------------------------------------------------

    async def sample(self):
        """Read every sensor and buffer one record; return its seq (None if nothing read)."""
        board = self.board
        t_ms = board.time_ms()
        readings = []
        for sensor in self.sensors:
            try:
                values = await sensor.read()
            except SensorError as e:
                self.health.sensor_fault(sensor.name, e.kind)
                board.log("E %s %s %s" % (sensor.name, e.kind, e))
                continue
            for reading in values:
                if reading[0] == "battery":
                    self.health.battery = reading[2]
            readings.extend(values)
        if not readings:
            return None
        part, n = senml.group(self.base_name, t_ms, readings)
        try:
            seq = self.buffer.append(bytes((n,)) + part)
        except OSError as e:
            self.health.flash_errors += 1
            board.log("E flash write %s" % e)
            return None
        self.health.samples += 1
        board.log("S %d %d %d" % (seq, t_ms, n))
        return seq

    async def _sample_loop(self):
        board = self.board
        interval_ms = int(self.cfg["interval_s"] * 1000)
        while True:
            start = board.ticks_ms()
            try:
                await self.sample()
            except Exception as e:  # a driver bug must not stop the node
                board.log("E sample %r" % (e,))
            self.health.heap((board.mem() or (None,))[0])
            board.feed_watchdog()
            self.cycle += 1
            if self.cycle % self.cfg["upload_every"] == 0:
                self._due.set()
            if self.cycle % self.cfg["health_every"] == 0:
                self._health_due = True
                self._due.set()
            spent = board.ticks_diff(board.ticks_ms(), start)
            await board.sleep_ms(max(0, interval_ms - spent))

    # -- uploading -------------------------------------------------------------------

    async def send_batch(self):
        """Send the oldest buffered records in one request; return how many left the buffer."""
        records = self.buffer.peek(MAX_BATCH_RECORDS, self._batch_limit)
        if not records:
            return 0
        first = records[0][0]
        last = records[-1][0]
        parts = []
        count = 0
        for _seq, payload in records:
            count += payload[0]
            parts.append(payload[1:])
        body = senml.pack(parts, count)
        del parts
        query = ["s=%d" % first, "n=%d" % len(records)]
        response = await self.client.request(coap.POST, "/readings", body, coap.SENML_CBOR, query)
        code = response.code
        if code in (coap.CHANGED, coap.CREATED):
            self.buffer.ack(last)
            self._batch_limit = self.cfg["batch_bytes"]
            self.health.uploaded += len(records)
            self.board.log("A %d %d" % (first, last))
            return len(records)
        if _client_error(code) and len(records) > 1:
            # Narrow down to the record the gateway will not take; keep the others.
            self._batch_limit = max(1, len(body) // 2)
            return 0
        if _client_error(code):
            # The gateway will never accept this record as it is: count it, do not block.
            self.buffer.ack(last)
            self.health.rejected += 1
            self.board.log("R %d %s" % (first, coap.code_str(code)))
            return 1
        raise CoapRefused(code, _max_age(response))

    async def send_health(self):
        uptime = self.board.ticks_diff(self.board.ticks_ms(), self.started)
        body = self.health.encode(self.board, self.buffer, uptime, self.slot)
        response = await self.client.request(coap.POST, "/health", body, coap.CBOR)
        if response.code >= 160:
            raise CoapRefused(response.code, _max_age(response))
        self._health_due = False

    async def _upload_loop(self):
        board = self.board
        backoff_ms = int(self.cfg["interval_s"] * 1000)
        retry_max_ms = int(self.cfg["retry_max_s"] * 1000)
        wait_ms = backoff_ms
        while True:
            await self._due.wait()
            self._due.clear()
            while self.buffer.pending or self._health_due:
                try:
                    if self.buffer.pending:
                        await self.send_batch()
                    else:
                        await self.send_health()
                    wait_ms = backoff_ms
                except CoapTimeout:
                    board.log("E gateway timeout, retry in %d ms" % wait_ms)
                    await board.sleep_ms(wait_ms)
                    wait_ms = min(wait_ms * 2, retry_max_ms)
                except CoapRefused as e:
                    hold = e.max_age * 1000 if e.max_age else wait_ms
                    board.log("E gateway refused %s, retry in %d ms" % (e.code, hold))
                    await board.sleep_ms(hold)
                    wait_ms = min(wait_ms * 2, retry_max_ms)
                except Exception as e:  # never let one bad exchange stop uploads
                    board.log("E upload %r" % (e,))
                    await board.sleep_ms(wait_ms)

    async def run(self):
        self.board.log(
            "simpul %s board %s kind %s slot %s boot %d cause %s"
            % (
                VERSION,
                self.cfg["board_id"],
                self.cfg["kind"],
                self.slot,
                self.health.boot_count,
                self.health.reset_cause,
            )
        )
        await asyncio.gather(self._sample_loop(), self._upload_loop())


def _client_error(code):
    return 128 <= code < 160  # 4.xx


def _max_age(response):
    value = response.option(coap.MAX_AGE)
    return coap.decode_uint(value) if value is not None else None


async def main(board):
    await Node(board, board.config).run()
