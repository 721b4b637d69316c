"""The sensor node: sample, buffer in flash, upload on acknowledgement, report health.

Two tasks share the ring buffer: the *sampler* wakes every ``interval_s``, reads the sensors,
appends one record and feeds the watchdog; the *uploader* sends what is buffered as
SenML-CBOR in confirmable POSTs and releases records only on the gateway's 2.04, so the
sampler keeps going while the gateway is away. The serial console gets one line per event:

    S <seq> <time_ms> <readings>    a sample was buffered
    A <first> <last>                the gateway acknowledged records first..last
    R <seq> <code>                  the gateway refused a record for good (counted)
    E <sensor> <kind> <message>     a sensor fault (counted)
    U <state> <detail>              an update's step (downloading, installed, confirmed...)
    O oscore <sid rid>              requests go out under OSCORE (``oscore``), its IDs only
                                    (again once the gateway handed over a new key)

Key rotation: a 2.04 protected under the board's OSCORE key may carry ``{"key": <key file>}``,
the new key the gateway holds for it; ``oscorekeys`` (imported for it, then dropped) writes
it over ``/oscore.json`` and makes its context, and the next request goes out under it. What
is still buffered then goes under the new key, which the gateway's new context opens.

Updates: a 2.04 from the gateway may carry ``{"ota": seq}`` (CBOR), a release due for this
board. Between uploads the uploader then downloads it into the other slot (``updater``,
imported only then), arms a trial boot and resets (inside ``ota_window`` if the config names
one). A trial boot confirms its slot only after its **self-test**: a sample read, readings
and a health report accepted by the gateway, within ``ota_selftest_s``; otherwise it resets,
and ``boot.py`` runs the old slot, which reports the rollback and why (``otastate``).
"""

import asyncio
import sys

import cbor
import coap
import coapclient
import health
import otastate
import ringbuf
import senml
import slots
from errors import (
    CborError,
    CoapRefused,
    CoapTimeout,
    OscoreError,
    ReleaseRefused,
    SensorError,
)

VERSION = "0.1.0"
BUFFER_DIR = "/data/buf"
BOOTS_PATH = "/data/boots"
MAX_BATCH_RECORDS = 64
# Cycles an installed release waits for its health report to go out before rebooting.
REBOOT_AFTER_CYCLES = 3
# Imported only while an update runs, dropped after it (``unload``).
UPDATE_ONLY = ("sha512", "ed25519", "cose", "manifest", "updater")
# Imported at start only, dropped once the security context is made.
START_ONLY = ("oscorekeys",)


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
        self.trial = bool(state["trial"] and state["trial_boots"])
        self.slot = state["trial"] if self.trial else state["active"]
        self.ota = otastate.OtaState(flash)
        try:
            # What the last boot left (a trial, its rollback): said after the start line.
            self._settled = self.ota.settle(self.slot, self.trial, board.reset_cause())
        except OSError as e:
            self._settled = False
            board.log("E flash ota state %s" % e)
        version = self.ota.slot_release(self.slot)[1] or VERSION
        self.health = health.Health(
            cfg["board_id"], cfg["kind"], version, count_boot(flash), board.reset_cause()
        )
        self.started = board.ticks_ms()
        # The release the gateway says is due, and when a refused one may be fetched again.
        self.ota_due = None
        self._retry_seq = 0
        self._retry_at = 0
        self._installed = None  # the cycle an installed release waits since
        self._reboot = False  # the gateway asked for a reboot (its control channel)
        # The self-test of a trial boot: readings, then health, accepted since boot.
        self._acked = False
        self.cycle = 0
        self._due = asyncio.Event()
        self._health_due = True
        self._batch_limit = cfg["batch_bytes"]
        # OSCORE when the board holds key material (/oscore.json), plain CoAP otherwise;
        # the key derivation's code is needed only now.
        import oscorekeys

        self.security = oscorekeys.load(flash)
        del oscorekeys
        unload(START_ONLY)
        self.client = coapclient.Client(
            board,
            board.udp(cfg["gateway_host"], cfg["gateway_port"]),
            cfg["coap_ack_timeout_ms"],
            cfg["coap_max_retransmit"],
            self.security,
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
            self._check_trial()
            self._check_reboot()
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
            self._acked = True
            self.buffer.ack(last)
            self._batch_limit = self.cfg["batch_bytes"]
            self.health.uploaded += len(records)
            self.board.log("A %d %d" % (first, last))
            self._hint(response)
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
        body = self.health.encode(
            self.board, self.buffer, uptime, self.slot, self.ota.report(self.slot)
        )
        response = await self.client.request(coap.POST, "/health", body, coap.CBOR)
        if response.code >= 160:
            raise CoapRefused(response.code, _max_age(response))
        self._health_due = False
        if response.code in (coap.CHANGED, coap.CREATED):
            self._hint(response)
            if self.trial and self._acked and self.health.samples:
                self._confirm()

    async def upload_pending(self, most=4):
        """Send what was sampled meanwhile, and health if due (the updater calls it between
        blocks, so readings keep flowing and each step of an update is reported)."""
        while self.buffer.pending and most:
            await self.send_batch()
            most -= 1
        if self._health_due:
            await self.send_health()

    # -- updates ---------------------------------------------------------------------

    def _hint(self, response):
        """Note ``{"ota": seq}`` and ``{"reboot": 1}`` in a 2.04 (a gateway of before OTA
        sends none), and take the new key of ``{"key": ...}``."""
        cf = response.option(coap.CONTENT_FORMAT)
        if not response.payload or cf is None or coap.decode_uint(cf) != coap.CBOR:
            return
        try:
            hint = cbor.loads(response.payload)
            seq = hint.get("ota")
            reboot = hint.get("reboot")
            key = hint.get("key")
        except (CborError, AttributeError):
            return
        if isinstance(seq, int) and seq > 0:
            self.ota_due = seq
        if reboot == 1:
            self._reboot = True
        # Only a protected response is ever a 2.04 here (coapclient refuses one in clear).
        if isinstance(key, str) and self.security is not None:
            self._rekey(key)

    def _rekey(self, text):
        """Write the key the gateway handed over and send under it from now on."""
        import oscorekeys

        try:
            self.security = oscorekeys.install(self.board.flash, text)
        except (OscoreError, OSError) as e:
            # The old key stays: the gateway hands the new one over again next time.
            self.board.log("E oscore key %s" % e)
            return
        finally:
            del oscorekeys
            unload(START_ONLY)
        self.client.security = self.security
        self.board.log("O oscore %r" % (self.security,))

    def progress(self, state, detail=None, save=True):
        """An update's step: kept (``otastate``), on the console, in the next health report."""
        try:
            self.ota.step(state, detail, save)
        except OSError as e:
            self.health.flash_errors += 1
            self.board.log("E flash ota state %s" % e)
        self.board.log("U %s %s" % (state, detail or ""))
        self._health_due = True

    def _confirm(self):
        """The trial passed its self-test: its slot becomes the one that boots."""
        seq = self.ota.slot_release(self.slot)[0]
        slots.write(self.board.flash, slots.confirm(slots.read(self.board.flash)))
        self.trial = False
        self.ota.confirmed(seq)
        self.progress("confirmed", "release %d in slot %s" % (seq, self.slot))

    def _check_trial(self):
        """Called every cycle: a trial that has not passed its self-test in time gives up."""
        if not self.trial:
            return
        spent = self.board.ticks_diff(self.board.ticks_ms(), self.started)
        if spent < self.cfg["ota_selftest_s"] * 1000:
            return
        if not self.health.samples:
            why = "no sensor gave a reading"
        elif not self._acked:
            why = "the gateway accepted no readings"
        else:
            why = "the gateway accepted no health report"
        self.progress("trial", otastate.FAILED + why)
        self.board.reset()

    def _update_wanted(self):
        seq = self.ota_due
        if seq is None or self.trial:
            return None
        ota = self.ota
        if seq <= ota.seq or seq <= ota.refused or seq == ota.pending:
            return None
        now = self.board.ticks_ms()
        if seq == self._retry_seq and self.board.ticks_diff(now, self._retry_at) < 0:
            return None
        return seq

    async def update(self, seq):
        """Fetch, check and install release ``seq``; a refusal is reported, never raised."""
        import updater

        self.progress("downloading", "release %d: manifest" % seq, save=False)
        try:
            await updater.Updater(self).run(seq)
        except ReleaseRefused as e:
            self._retry_seq = seq
            self._retry_at = self.board.ticks_ms() + self.cfg["ota_retry_s"] * 1000
            self.progress("rejected", "%s: %s" % (e.reason, e))
            return
        finally:
            del updater
            unload()
        self._installed = self.cycle

    def _in_window(self):
        window = self.cfg["ota_window"]
        if window is None:
            return True
        hour = self.board.time_ms() // 3600000 % 24
        start, end = window
        return start <= hour < end if start <= end else hour >= start or hour < end

    def _check_reboot(self):
        """Called every cycle: an installed release boots once health said so (or a few
        cycles went by without the gateway), inside the maintenance window."""
        if self._installed is None or not self._in_window():
            return
        if self._health_due and self.cycle < self._installed + REBOOT_AFTER_CYCLES:
            return
        self.board.log("U reboot into the trial")
        self.board.reset()

    async def _after_uploads(self):
        """What the uploader does once readings and health are sent: a reboot the gateway
        asked for (not in a trial, which a reset would roll back), else updates."""
        if self._reboot and not self.trial:
            self.board.log("B reboot asked by the gateway")
            self.board.reset()
        if self._installed is not None:
            return
        seq = self._update_wanted()
        if seq is not None:
            await self.update(seq)

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
                    elif self._health_due:
                        await self.send_health()
                    if not (self.buffer.pending or self._health_due):
                        await self._after_uploads()
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
                self.health.fw,
                self.cfg["board_id"],
                self.cfg["kind"],
                self.slot,
                self.health.boot_count,
                self.health.reset_cause,
            )
        )
        if self._settled:
            self.board.log("U %s %s" % (self.ota.state, self.ota.detail or ""))
        if self.security is not None:
            self.board.log("O oscore %r" % (self.security,))
        await asyncio.gather(self._sample_loop(), self._upload_loop())


def unload(names=UPDATE_ONLY):
    """Give the update-only modules' heap back (hw/firmware_tools UPDATE_ONLY names them), or
    the start-only ones': each module's globals are cleared too, so that a stray reference to
    one keeps nothing else alive. Not on CPython, where the emulator's boards share one set
    of modules."""
    if sys.implementation.name != "micropython":
        return
    for name in names:
        module = sys.modules.pop(name, None)
        if module is not None:
            module.__dict__.clear()


def _client_error(code):
    return 128 <= code < 160  # 4.xx


def _max_age(response):
    value = response.option(coap.MAX_AGE)
    return coap.decode_uint(value) if value is not None else None


async def main(board):
    await Node(board, board.config).run()
