"""The emulated machine buses (hw/machine.py), device models (hw/sensors/), and profiles."""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

from hw.machine import ADC, I2C, RTC, UART, WDT, Pin
from hw.profiles import PINS, build_buses, build_hardware, sensor_config, site_code
from hw.sensors import (
    DATASHEET_CALIBRATION,
    BatteryModel,
    Bme280Model,
    JsnSr04tModel,
    Pms5003Model,
    compensate_humidity,
    compensate_pressure,
    compensate_temperature,
    jsnsr04t_frame,
    pms5003_frame,
    raw_for,
)
from hw.signals import Environment

ROOT = Path(__file__).resolve().parents[2]
T0 = 1767225600.0  # 2026-01-01 07:00 WIB


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- BME280 model -------------------------------------------------------------------------


def test_calibration_registers_follow_the_datasheet_layout() -> None:
    tp, h = DATASHEET_CALIBRATION.registers()
    assert (len(tp), len(h)) == (26, 7)
    assert tp[:2] == bytes.fromhex("706b")  # dig_T1 27504, little-endian
    assert tp[4:6] == (-1000).to_bytes(2, "little", signed=True)  # dig_T3
    assert tp[25] == 75  # dig_H1 at 0xA1
    # dig_H4 = 313 (0x139) and dig_H5 = 50 (0x032) share 0xE5's nibbles.
    assert h == bytes((362 & 0xFF, 362 >> 8, 0, 0x13, 0x29, 0x03, 30))
    negative = DATASHEET_CALIBRATION._replace(h4=-21, h5=-7, h6=-30).registers()[1]
    assert negative[3:] == bytes((0xFE, 0x9B, 0xFF, 0xE2))


def test_compensation_gives_the_datasheet_worked_example() -> None:
    temperature, t_fine = compensate_temperature(DATASHEET_CALIBRATION, 519888)
    assert (temperature, t_fine) == (2508, 128422)
    pressure = compensate_pressure(DATASHEET_CALIBRATION, 415148, t_fine) / 256
    assert pressure == pytest.approx(100653.27, abs=0.05)


@pytest.mark.parametrize("celsius", [-40.0, -5.5, 0.0, 18.25, 33.0, 85.0])
@pytest.mark.parametrize("rh", [0.0, 12.3, 55.0, 99.9, 100.0])
def test_raw_values_invert_the_compensation(celsius: float, rh: float) -> None:
    cal = DATASHEET_CALIBRATION
    adc_t, adc_p, adc_h = raw_for(cal, celsius, rh, 87412.0)
    temperature, t_fine = compensate_temperature(cal, adc_t)
    assert temperature / 100 == pytest.approx(celsius, abs=0.01)
    assert compensate_humidity(cal, adc_h, t_fine) / 1024 == pytest.approx(rh, abs=0.05)
    assert compensate_pressure(cal, adc_p, t_fine) / 256 == pytest.approx(87412.0, abs=1)
    assert max(adc_t, adc_p) < 1 << 20
    assert 0 <= adc_h < 1 << 16


def test_bme280_model_registers_and_forced_mode() -> None:
    model = Bme280Model(lambda: (25.0, 60.0, 100000.0), conversion_polls=2)
    bus = I2C(0, devices={0x76: model})
    assert bus.readfrom_mem(0x76, 0xD0, 1) == b"\x60"
    assert bus.readfrom_mem(0x76, 0xF7, 8) == bytes.fromhex("8000008000008000")  # reset values
    bus.writeto_mem(0x76, 0xF2, b"\x01")
    assert bus.readfrom_mem(0x76, 0xF2, 1) == b"\x01"
    bus.writeto_mem(0x76, 0xF4, b"\x25")
    assert [bus.readfrom_mem(0x76, 0xF3, 1)[0] & 0x08 for _ in range(3)] == [8, 8, 0]
    assert bus.readfrom_mem(0x76, 0xF4, 1) == b"\x24"  # back in sleep mode
    data = bus.readfrom_mem(0x76, 0xF7, 8)
    adc_p = data[0] << 12 | data[1] << 4 | data[2] >> 4
    adc_t = data[3] << 12 | data[4] << 4 | data[5] >> 4
    adc_h = data[6] << 8 | data[7]
    assert (adc_t, adc_p, adc_h) == raw_for(DATASHEET_CALIBRATION, 25.0, 60.0, 100000.0)


def test_bme280_model_ctrl_hum_needs_a_ctrl_meas_write_and_reset_clears() -> None:
    model = Bme280Model(lambda: (25.0, 60.0, 100000.0), conversion_polls=0)
    bus = I2C(0, devices={0x76: model})
    bus.writeto_mem(0x76, 0xF4, b"\x25")  # no humidity oversampling yet
    assert bus.readfrom_mem(0x76, 0xFD, 2) == b"\x80\x00"
    bus.writeto_mem(0x76, 0xF2, b"\x01\xf4\x25")  # register/value pairs in one write
    assert bus.readfrom_mem(0x76, 0xFD, 2) != b"\x80\x00"
    bus.writeto_mem(0x76, 0xE0, b"\xb6")
    assert bus.readfrom_mem(0x76, 0xF7, 8) == bytes.fromhex("8000008000008000")
    assert bus.readfrom_mem(0x76, 0xF2, 1) == b"\x00"


def test_bme280_model_garbage_never_shows_the_chip_id() -> None:
    model = Bme280Model(lambda: (25.0, 60.0, 100000.0), seed=1)
    model.fault = "garbage"
    assert all(model.read(0xD0, 1) != b"\x60" for _ in range(500))


# --- machine ------------------------------------------------------------------------------


def test_i2c_missing_or_silent_device_is_enodev() -> None:
    model = Bme280Model(lambda: (25.0, 60.0, 100000.0))
    bus = I2C(0, scl=Pin(22), sda=Pin(21), devices={0x76: model})
    assert bus.scan() == [0x76]
    with pytest.raises(OSError, match="ENODEV") as missing:
        bus.readfrom_mem(0x77, 0xD0, 1)
    assert missing.value.errno == errno.ENODEV
    model.fault = "timeout"
    assert bus.scan() == []
    with pytest.raises(OSError, match="ENODEV") as silent:
        bus.writeto_mem(0x76, 0xF4, b"\x25")
    assert silent.value.errno == errno.ENODEV
    buf = bytearray(1)
    model.fault = None
    bus.readfrom_mem_into(0x76, 0xD0, memoryview(buf))
    assert buf == b"\x60"
    bus.writeto(0x76, b"\xd0")
    assert bus.readfrom(0x76, 1) == b"\x60"


def test_faults_are_checked() -> None:
    with pytest.raises(ValueError, match="fault"):
        BatteryModel(lambda: 4.0).fault = "flaky"


def test_uart_delivers_writes_and_queues_answers() -> None:
    sonar = JsnSr04tModel(lambda: 1234.4)
    uart = UART(2, 9600, tx=27, rx=26, timeout=0, device=sonar, rxbuf=6)
    assert uart.read() is None
    assert uart.any() == 0
    assert uart.write(b"\x55") == 1
    assert uart.any() == 4
    assert uart.read(1) == b"\xff"
    buf = bytearray(8)
    assert uart.readinto(buf) == 3
    assert bytes(buf[:3]) == jsnsr04t_frame(1234)[1:]
    uart.write(b"\x55\x55")  # 8 bytes into a 6-byte buffer
    assert (uart.any(), uart.overruns) == (6, 2)
    assert uart.sent == b"\x55\x55\x55"
    sonar.fault = "timeout"
    uart.read()
    uart.write(b"\x55")
    assert uart.any() == 0


def test_adc_quantises_and_clips_to_the_attenuation_range() -> None:
    volts = [1.0]
    adc = ADC(Pin(35), atten=ADC.ATTN_11DB, source=lambda: volts[0])
    assert adc.read_uv() == pytest.approx(1_000_000, abs=600)
    assert adc.read() == round(1_000_000 * 4095 / 2_450_000)
    assert adc.read_u16() == adc.read() * 65535 // 4095
    volts[0] = 3.3
    assert (adc.read_uv(), adc.read()) == (2_450_000, 4095)
    adc.atten(ADC.ATTN_0DB)
    assert adc.read_uv() == 950_000
    volts[0] = -0.2
    assert adc.read_uv() == 0


def test_pin_records_levels_and_can_be_driven() -> None:
    clock = Clock()
    led = Pin(2, Pin.OUT, value=0, clock=clock)
    clock.t += 1
    led.on()
    led(0)
    assert led.levels() == [0, 1, 0]
    assert led.history[1] == (T0 + 1, 1)
    button = Pin(0, Pin.IN, Pin.PULL_UP)
    assert button.value() == 1
    button.drive(0)
    assert button() == 0


def test_watchdog_expires_unless_fed() -> None:
    now = [0.0]
    wdt = WDT(timeout=1000, clock_ms=lambda: now[0])
    now[0] = 900
    assert not wdt.expired(900)
    wdt.feed()
    assert not wdt.expired(1800)
    assert wdt.expired(1901)
    assert wdt.feeds == 1


def test_rtc_datetime_and_memory() -> None:
    clock = Clock()
    rtc = RTC(clock=clock)
    assert rtc.datetime() == (2026, 1, 1, 3, 0, 0, 0, 0)  # a Thursday (0 is Monday)
    rtc.datetime((2030, 6, 15, 0, 12, 30, 5, 0))
    clock.t += 10
    assert rtc.datetime() == (2030, 6, 15, 5, 12, 30, 15, 0)
    rtc.memory(b"boot=3")
    assert rtc.memory() == b"boot=3"
    with pytest.raises(ValueError, match="too long"):
        rtc.memory(bytes(2049))


# --- PMS5003 and JSN-SR04T models ---------------------------------------------------------


def test_pms5003_frame_layout() -> None:
    frame = pms5003_frame(12, 18, 29)
    assert len(frame) == 32
    assert frame[:4] == bytes.fromhex("424d001c")
    assert frame[10:16] == bytes.fromhex("000c0012001d")  # atmospheric PM1, PM2.5, PM10
    assert int.from_bytes(frame[30:], "big") == sum(frame[:30])
    assert int.from_bytes(pms5003_frame(12, 18, 29, corrupt=True)[30:], "big") != sum(frame[:30])


def test_pms5003_model_modes_and_commands() -> None:
    clock = Clock()
    model = Pms5003Model(lambda: (10.0, 15.0, 24.0), clock=clock)
    assert model.pending() == b""
    clock.t += 3.0
    streamed = model.pending()
    assert streamed == pms5003_frame(10, 15, 24) * 3
    assert model.on_write(bytes.fromhex("424de100000170")) == bytes.fromhex("424d0004e1000174")
    clock.t += 5.0
    assert model.pending() == b""  # passive: silent until asked
    assert model.on_write(bytes.fromhex("424de200000171")) == pms5003_frame(10, 15, 24)
    assert model.on_write(bytes.fromhex("424de200000172")) == b""  # bad command checksum
    assert model.on_write(bytes.fromhex("424de4")) == b""
    assert model.on_write(bytes.fromhex("00000173")) == bytes.fromhex("424d0004e4000177")
    assert model.asleep
    assert model.on_write(bytes.fromhex("424de200000171")) == b""


def test_pms5003_model_garbage_has_a_bad_checksum() -> None:
    model = Pms5003Model(lambda: (10.0, 15.0, 24.0), clock=Clock(), seed=4)
    model.on_write(bytes.fromhex("424de100000170"))
    model.fault = "garbage"
    answer = model.on_write(bytes.fromhex("424de200000171"))
    frame = answer[answer.rindex(b"BM\x00\x1c") :]
    assert len(frame) == 32
    assert int.from_bytes(frame[30:], "big") != sum(frame[:30]) & 0xFFFF


def test_jsnsr04t_model_answers_triggers_and_streams_in_mode_2() -> None:
    assert jsnsr04t_frame(3215) == bytes((0xFF, 0x0C, 0x8F, (0xFF + 0x0C + 0x8F) & 0xFF))
    model = JsnSr04tModel(lambda: 7000)
    assert model.on_write(b"\x55") == jsnsr04t_frame(0)  # no echo beyond 6 m
    clock = Clock()
    streaming = JsnSr04tModel(lambda: 1500, clock=clock, mode=2)
    clock.t += 0.35
    assert streaming.pending() == jsnsr04t_frame(1500) * 3
    with pytest.raises(ValueError, match="clock"):
        JsnSr04tModel(lambda: 1500, mode=2)


def test_battery_model_divides_and_fails() -> None:
    model = BatteryModel(lambda: 4.0, ratio=2.0)
    assert model() == 2.0
    model.fault = "timeout"
    assert model() == 0.0
    model.fault = "garbage"
    assert model() == 3.3


# --- profiles -----------------------------------------------------------------------------


def test_profile_pins_are_the_firmware_pin_map() -> None:
    tree = ast.parse((ROOT / "firmware" / "pins.py").read_text())
    assigns = [n for n in tree.body if isinstance(n, ast.Assign)]
    pins = next(n.value for n in assigns if any(getattr(t, "id", "") == "PINS" for t in n.targets))
    assert ast.literal_eval(pins) == dict(PINS)
    # The chip's board.py opens its buses on the same map, not on a copy of its own.
    board = ast.parse((ROOT / "firmware" / "board.py").read_text())
    assert any(isinstance(n, ast.ImportFrom) and n.module == "pins" for n in board.body)
    keys = [
        {getattr(k, "value", None) for k in n.keys}
        for n in ast.walk(board)
        if isinstance(n, ast.Dict)
    ]
    assert not any({"i2c_scl", "vbat_adc"} <= names for names in keys)


@pytest.mark.parametrize(
    ("kind", "buses", "devices"),
    [
        ("air", {"i2c", "pms", "vbat"}, {"bme280", "pms5003", "battery"}),
        ("water", {"i2c", "sonar", "vbat"}, {"bme280", "jsnsr04t", "battery"}),
        ("bin", {"sonar", "vbat"}, {"jsnsr04t", "battery"}),
    ],
)
def test_each_kind_gets_its_fitted_buses(kind: str, buses: set[str], devices: set[str]) -> None:
    hw = build_buses(kind, Environment(5, "cimahi", kind), Clock())
    assert set(hw) == buses == set(hw.buses)
    assert set(hw.devices) == devices
    if "i2c" in hw:
        i2c = hw["i2c"]
        assert isinstance(i2c, I2C)
        assert i2c.scan() == [0x76]
        assert isinstance(i2c.scl, Pin)
        assert i2c.scl.id == PINS["i2c_scl"]
    adc = hw["vbat"]
    assert isinstance(adc, ADC)
    assert 3.4 < adc.read_uv() * 2 / 1e6 < 4.2


def test_profile_models_follow_the_environment_and_the_clock() -> None:
    clock = Clock()
    env = Environment(9, "tegal", "water")
    hw = build_buses("water", env, clock)
    sonar = hw["sonar"]
    assert isinstance(sonar, UART)
    for t in (T0, T0 + 6 * 3600):
        clock.t = t
        sonar.read()
        sonar.write(b"\x55")
        answer = sonar.read()
        assert answer is not None
        assert answer[1] << 8 | answer[2] == round(env.sonar_mm(t))
    hw.devices["jsnsr04t"].fault = "timeout"
    sonar.write(b"\x55")
    assert sonar.read() is None


def test_hardware_for_the_engine() -> None:
    hw = build_hardware("bin", "Pematang Siantar", 11, clock=Clock())
    assert hw.config == {"bin_depth_mm": 1100, "full_mm": 250}
    assert sensor_config("water", Environment(1, "Takengon", "water")) == {"mount_mm": 4200}
    assert [site_code(s) for s in ("Takengon", "Tegal", "Cimahi", "Tarutung")] == [
        "TKN",
        "TGL",
        "CMH",
        "TRT",
    ]
    with pytest.raises(ValueError, match="environment"):
        build_buses("air", Environment(1, "tegal", "bin"), Clock())
