"""The firmware's sensor drivers against the emulator's device models (hw/sensors/)."""

from __future__ import annotations

import time

import battery
import bme280
import jsnsr04t
import pms5003
import pytest
from errors import SensorChecksum, SensorRange, SensorTimeout

from hw.machine import ADC, I2C, UART, I2CDevice, Pin
from hw.sensors import (
    DATASHEET_CALIBRATION,
    BatteryModel,
    Bme280Calibration,
    Bme280Model,
    JsnSr04tModel,
    Pms5003Model,
    jsnsr04t_frame,
    pms5003_frame,
)

PASSIVE = bytes.fromhex("424de100000170")
READ = bytes.fromhex("424de200000171")


class Clock:
    def __init__(self, t: float = 1767225600.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def value(readings: list[tuple[str, str, float]], name: str) -> float:
    matches = [v for n, _, v in readings if n == name]
    assert len(matches) == 1, readings
    return matches[0]


# --- BME280 -------------------------------------------------------------------------------


def bme_bus(model: I2CDevice, address: int = 0x76) -> I2C:
    return I2C(0, scl=Pin(22), sda=Pin(21), devices={address: model})


@pytest.mark.parametrize(
    ("celsius", "rh", "pa"),
    [
        (25.0, 60.0, 100000.0),
        (27.43, 81.7, 101012.0),
        (15.37, 93.3, 87412.0),  # Takengon, before dawn
        (-40.0, 0.0, 30000.0),
        (85.0, 100.0, 110000.0),
        (0.01, 55.5, 95000.0),
    ],
)
async def test_bme280_reads_back_the_true_values(celsius: float, rh: float, pa: float) -> None:
    sensor = bme280.BME280(bme_bus(Bme280Model(lambda: (celsius, rh, pa))))
    readings = await sensor.read()
    assert [(n, u) for n, u, _ in readings] == [
        ("temperature", "Cel"),
        ("humidity", "%RH"),
        ("pressure", "Pa"),
    ]
    assert value(readings, "temperature") == pytest.approx(celsius, abs=0.01)
    assert value(readings, "humidity") == pytest.approx(rh, abs=0.1)
    assert isinstance(value(readings, "pressure"), int)
    assert value(readings, "pressure") == pytest.approx(pa, abs=3)


class FixedBme280(I2CDevice):
    """A BME280 whose data registers hold given raw values (no model in between)."""

    def __init__(self, cal: Bme280Calibration, adc_t: int, adc_p: int, adc_h: int) -> None:
        self.regs = bytearray(256)
        tp, h = cal.registers()
        self.regs[0x88 : 0x88 + len(tp)] = tp
        self.regs[0xE1 : 0xE1 + len(h)] = h
        self.regs[0xD0] = 0x60
        press = (adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4)
        temp = (adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4)
        self.regs[0xF7:0xFF] = bytes((*press, *temp, adc_h >> 8, adc_h & 0xFF))

    def read(self, reg: int, n: int) -> bytes:
        return bytes(self.regs[reg : reg + n])

    def write(self, reg: int, data: bytes) -> None:
        pass


async def test_bme280_matches_the_datasheet_worked_example() -> None:
    # Bosch's worked example: adc_T 519888 -> 25.08 degC; adc_P 415148 -> 100653.27 Pa (the
    # floating-point formula; the 64-bit integer one gives 100653.25).
    device = FixedBme280(DATASHEET_CALIBRATION, 519888, 415148, 30000)
    readings = await bme280.BME280(bme_bus(device)).read()
    assert value(readings, "temperature") == 25.08
    assert value(readings, "pressure") == 100653


async def test_bme280_decodes_signed_and_split_humidity_calibration() -> None:
    # Negative dig_H4/dig_H5/dig_H6 exercise the sign of the split nibbles in 0xE4..0xE6.
    cal = DATASHEET_CALIBRATION._replace(h2=380, h3=4, h4=-21, h5=-7, h6=-30)
    sensor = bme280.BME280(bme_bus(Bme280Model(lambda: (31.2, 66.6, 99000.0), calibration=cal)))
    readings = await sensor.read()
    assert value(readings, "humidity") == pytest.approx(66.6, abs=0.1)
    assert value(readings, "temperature") == pytest.approx(31.2, abs=0.01)


async def test_bme280_runs_one_forced_measurement_per_read() -> None:
    model = Bme280Model(lambda: (25.0, 60.0, 100000.0))
    bus = bme_bus(model)
    sensor = bme280.BME280(bus)
    await sensor.read()
    await sensor.read()
    assert model.measurements == 2
    writes = bus.writes(0x76)
    assert writes[:2] == [(0xF2, b"\x01"), (0xF4, b"\x25")]  # ctrl_hum first, then forced x1


@pytest.mark.parametrize("polls", [0, 1, 5])
async def test_bme280_waits_for_the_conversion(polls: int) -> None:
    model = Bme280Model(lambda: (22.5, 70.0, 100500.0), conversion_polls=polls)
    readings = await bme280.BME280(bme_bus(model)).read()
    assert value(readings, "temperature") == pytest.approx(22.5, abs=0.01)


async def test_bme280_conversion_that_never_ends_times_out() -> None:
    model = Bme280Model(lambda: (22.5, 70.0, 100500.0), conversion_polls=10**6)
    start = time.monotonic()
    with pytest.raises(SensorTimeout, match="not done"):
        await bme280.BME280(bme_bus(model)).read()
    assert time.monotonic() - start < 2


async def test_bme280_skipped_humidity_is_a_range_error() -> None:
    class NoCtrlHum(Bme280Model):
        def write(self, reg: int, data: bytes) -> None:
            if reg != 0xF2:
                super().write(reg, data)

    sensor = bme280.BME280(bme_bus(NoCtrlHum(lambda: (25.0, 60.0, 100000.0))))
    with pytest.raises(SensorRange, match="skipped"):
        await sensor.read()


@pytest.mark.parametrize(
    ("truth", "what"),
    [((90.0, 50.0, 100000.0), "temperature"), ((25.0, 50.0, 25000.0), "pressure")],
)
async def test_bme280_out_of_range_values_are_refused(
    truth: tuple[float, float, float], what: str
) -> None:
    sensor = bme280.BME280(bme_bus(Bme280Model(lambda: truth)))
    with pytest.raises(SensorRange, match=what):
        await sensor.read()


async def test_bme280_wrong_chip_is_refused() -> None:
    bmp280 = FixedBme280(DATASHEET_CALIBRATION, 519888, 415148, 30000)
    bmp280.regs[0xD0] = 0x58
    with pytest.raises(SensorRange, match="0x58"):
        await bme280.BME280(bme_bus(bmp280)).read()


async def test_bme280_faults_and_recovery() -> None:
    model = Bme280Model(lambda: (25.0, 60.0, 100000.0))
    sensor = bme280.BME280(bme_bus(model))
    model.fault = "garbage"
    with pytest.raises(SensorRange, match="chip id"):
        await sensor.read()
    model.fault = "timeout"
    start = time.monotonic()
    with pytest.raises(SensorTimeout, match="no answer"):
        await sensor.read()
    assert time.monotonic() - start < 1
    model.fault = None
    assert value(await sensor.read(), "temperature") == pytest.approx(25.0, abs=0.01)


async def test_bme280_garbage_after_calibration_is_caught() -> None:
    model = Bme280Model(lambda: (25.0, 60.0, 100000.0))
    sensor = bme280.BME280(bme_bus(model))
    await sensor.read()
    model.fault = "garbage"
    for _ in range(5):
        with pytest.raises(SensorRange):
            await sensor.read()


async def test_bme280_replaced_chip_gets_its_own_calibration_read() -> None:
    truth = (26.0, 70.0, 100200.0)
    bus = bme_bus(Bme280Model(lambda: truth))
    sensor = bme280.BME280(bus)
    await sensor.read()
    old = bus.devices[0x76]
    old.fault = "garbage"  # the connector comes loose...
    with pytest.raises(SensorRange):
        await sensor.read()
    other = DATASHEET_CALIBRATION._replace(t1=28000, t2=26000, p1=37000, h2=340, h5=40)
    bus.devices[0x76] = Bme280Model(lambda: truth, calibration=other)  # ...and a new chip
    readings = await sensor.read()
    assert value(readings, "temperature") == pytest.approx(26.0, abs=0.01)
    assert value(readings, "humidity") == pytest.approx(70.0, abs=0.1)
    assert value(readings, "pressure") == pytest.approx(100200, abs=3)


async def test_bme280_absent_chip_times_out() -> None:
    with pytest.raises(SensorTimeout):
        await bme280.BME280(I2C(0, devices={})).read()


# --- PMS5003 ------------------------------------------------------------------------------


def pms_setup(
    truth: tuple[float, float, float] = (12.4, 18.0, 29.2),
) -> tuple[pms5003.PMS5003, Pms5003Model, UART]:
    model = Pms5003Model(lambda: truth, clock=Clock())
    uart = UART(1, 9600, tx=17, rx=16, timeout=0, device=model)
    return pms5003.PMS5003(uart), model, uart


async def test_pms5003_reads_atmospheric_concentrations() -> None:
    sensor, _, _ = pms_setup((12.4, 18.0, 29.2))
    assert await sensor.read() == [
        ("pm1", "ug/m3", 12),
        ("pm2_5", "ug/m3", 18),
        ("pm10", "ug/m3", 29),
    ]


async def test_pms5003_reports_atmospheric_not_cf1_values() -> None:
    # Above ~30 ug/m3 the CF=1 words differ from the atmospheric ones.
    sensor, _, _ = pms_setup((105.0, 150.0, 240.0))
    readings = await sensor.read()
    assert [v for _, _, v in readings] == [105, 150, 240]


async def test_pms5003_switches_to_passive_once() -> None:
    sensor, model, uart = pms_setup()
    await sensor.read()
    await sensor.read()
    assert model.passive
    assert bytes(uart.sent) == PASSIVE + READ + READ


async def test_pms5003_resyncs_after_noise_and_acknowledgements() -> None:
    class Noisy(Pms5003Model):
        def on_write(self, data: bytes) -> bytes:
            reply = super().on_write(data)
            if data == READ:
                # noise, a command acknowledgement after a stray 0x42, more noise, and a
                # stray 0x42 right before the frame's own 42 4D
                return b"\x00\x13\x42\x42\x4d\x00\x04\xe1\x00\x01\x74\x4d\xff\x42" + reply
            return reply

    model = Noisy(lambda: (7.0, 10.0, 16.0), clock=Clock())
    sensor = pms5003.PMS5003(UART(1, device=model))
    assert [v for _, _, v in await sensor.read()] == [7, 10, 16]


async def test_pms5003_discards_stale_bytes_before_asking() -> None:
    sensor, _, uart = pms_setup((12.4, 18.0, 29.2))
    await sensor.read()
    uart.inject(pms5003_frame(99, 99, 99))  # e.g. a frame streamed before a reset
    assert [v for _, _, v in await sensor.read()] == [12, 18, 29]


async def test_pms5003_bad_checksum() -> None:
    sensor, model, _ = pms_setup()
    model.fault = "garbage"
    with pytest.raises(SensorChecksum, match="checksum"):
        await sensor.read()


async def test_pms5003_endless_noise_is_a_checksum_error() -> None:
    class Hissing(Pms5003Model):
        def on_write(self, data: bytes) -> bytes:
            return bytes(range(0x50, 0x50 + 160))

    sensor = pms5003.PMS5003(UART(1, device=Hissing(lambda: (1.0, 1.0, 1.0), clock=Clock())))
    with pytest.raises(SensorChecksum, match="no frame start"):
        await sensor.read()


async def test_pms5003_dead_sensor_times_out_and_passive_is_asked_again() -> None:
    sensor, model, uart = pms_setup()
    await sensor.read()
    model.fault = "timeout"
    start = time.monotonic()
    with pytest.raises(SensorTimeout):
        await sensor.read()
    assert 1.0 < time.monotonic() - start < 3.0
    model.fault = None
    model.passive = False  # it came back from a power cut in active mode
    assert [v for _, _, v in await sensor.read()] == [12, 18, 29]
    assert uart.sent.count(PASSIVE) == 2


async def test_pms5003_beyond_its_range() -> None:
    sensor, _, _ = pms_setup((900.0, 1200.0, 1900.0))
    with pytest.raises(SensorRange):
        await sensor.read()


# --- JSN-SR04T ----------------------------------------------------------------------------


def sonar(mm: float, **geometry: int) -> tuple[jsnsr04t.JSNSR04T, JsnSr04tModel, UART]:
    model = JsnSr04tModel(lambda: mm)
    uart = UART(2, 9600, tx=27, rx=26, timeout=0, device=model)
    return jsnsr04t.JSNSR04T(uart, **geometry), model, uart


async def test_jsnsr04t_water_level() -> None:
    sensor, model, uart = sonar(3215.4, mount_mm=4200)
    assert await sensor.read() == [("distance", "m", 3.215), ("level", "m", 0.985)]
    assert bytes(uart.sent) == b"\x55"
    assert model.triggers == 1


@pytest.mark.parametrize(
    ("mm", "fill"), [(1100, 0.0), (1300, 0.0), (675, 50.0), (250, 100.0), (210, 100.0)]
)
async def test_jsnsr04t_bin_fill(mm: int, fill: float) -> None:
    sensor, _, _ = sonar(mm, bin_depth_mm=1100)
    readings = await sensor.read()
    assert value(readings, "distance") == mm / 1000
    assert value(readings, "fill") == fill


async def test_jsnsr04t_distance_only_without_geometry() -> None:
    sensor, _, _ = sonar(2000)
    assert await sensor.read() == [("distance", "m", 2.0)]


@pytest.mark.parametrize("mm", [150, 199, 6001, 7000])
async def test_jsnsr04t_blind_zone_and_beyond_range(mm: int) -> None:
    sensor, _, _ = sonar(mm, mount_mm=4000)
    with pytest.raises(SensorRange):
        await sensor.read()


@pytest.mark.parametrize("mm", [200, 6000])
async def test_jsnsr04t_range_limits_are_valid(mm: int) -> None:
    sensor, _, _ = sonar(mm, mount_mm=6500)
    assert value(await sensor.read(), "distance") == mm / 1000


async def test_jsnsr04t_ignores_stale_frames() -> None:
    sensor, _, uart = sonar(1234, mount_mm=4000)
    uart.inject(jsnsr04t_frame(999) + b"\x12")  # left over from streaming mode
    assert value(await sensor.read(), "distance") == 1.234


async def test_jsnsr04t_skips_noise_before_the_frame() -> None:
    class Noisy(JsnSr04tModel):
        def on_write(self, data: bytes) -> bytes:
            return b"\x00\x17" + super().on_write(data)

    uart = UART(2, device=Noisy(lambda: 4321))
    assert value(await jsnsr04t.JSNSR04T(uart).read(), "distance") == 4.321


async def test_jsnsr04t_bad_sum() -> None:
    sensor, model, _ = sonar(1500, mount_mm=4000)
    model.fault = "garbage"
    for _ in range(5):
        with pytest.raises(SensorChecksum):
            await sensor.read()


async def test_jsnsr04t_silent_module_times_out_quickly() -> None:
    sensor, model, _ = sonar(1500, mount_mm=4000)
    model.fault = "timeout"
    start = time.monotonic()
    with pytest.raises(SensorTimeout):
        await sensor.read()
    assert time.monotonic() - start < 1.5
    model.fault = None
    assert value(await sensor.read(), "level") == 2.5


def test_jsnsr04t_takes_one_geometry() -> None:
    with pytest.raises(ValueError, match="not both"):
        jsnsr04t.JSNSR04T(UART(2), mount_mm=4000, bin_depth_mm=1000)
    with pytest.raises(ValueError, match="full_mm"):
        jsnsr04t.JSNSR04T(UART(2), bin_depth_mm=240)


# --- battery ------------------------------------------------------------------------------


def vbat(source: BatteryModel) -> battery.Battery:
    return battery.Battery(ADC(Pin(35), atten=ADC.ATTN_11DB, source=source))


@pytest.mark.parametrize("volts", [3.5, 3.97, 4.15])
async def test_battery_voltage(volts: float) -> None:
    assert await vbat(BatteryModel(lambda: volts)).read() == [("battery", "V", volts)]


async def test_battery_averages_samples() -> None:
    levels = iter([1.9, 2.1] * 100)  # a noisy pin: every single sample is 0.2 V off
    sensor = battery.Battery(ADC(Pin(35), atten=ADC.ATTN_11DB, source=lambda: next(levels)))
    assert await sensor.read() == [("battery", "V", 4.0)]


async def test_battery_uses_the_divider_ratio() -> None:
    adc = ADC(Pin(35), atten=ADC.ATTN_11DB, source=BatteryModel(lambda: 3.3, ratio=3.0))
    assert await battery.Battery(adc, ratio=3.0).read() == [("battery", "V", 3.3)]


@pytest.mark.parametrize("fault", ["timeout", "garbage"])
async def test_battery_broken_divider_is_a_range_error(fault: str) -> None:
    model = BatteryModel(lambda: 3.9)
    model.fault = fault
    with pytest.raises(SensorRange):
        await vbat(model).read()


async def test_battery_overvoltage() -> None:
    with pytest.raises(SensorRange, match=r"4\.8 V"):
        await vbat(BatteryModel(lambda: 4.8)).read()
