"""The host's sensors through gpiozero's internal devices, with and without a thermal zone."""

from __future__ import annotations

from pathlib import Path

from gateway.pi.host import HostSensors


def test_the_first_thermal_zone_is_the_cpu_temperature(tmp_path: Path) -> None:
    thermal = tmp_path / "thermal"
    for zone, milli in (("thermal_zone0", "47632"), ("thermal_zone1", "90000")):
        (thermal / zone).mkdir(parents=True)
        (thermal / zone / "temp").write_text(milli + "\n")
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.42 0.30 0.20 1/123 4567\n")
    host = HostSensors(tmp_path, thermal=thermal, loadavg=loadavg)
    try:
        assert host.cpu_temp_c() == 47.6
        assert host.load1() == 0.42
        usage = host.disk_usage_pct()
        assert usage is not None
        assert 0 < usage <= 100
    finally:
        host.close()


def test_no_thermal_zone_is_no_temperature_not_an_error(tmp_path: Path) -> None:
    host = HostSensors(tmp_path, thermal=tmp_path / "absent", loadavg=tmp_path / "absent")
    try:
        assert host.cpu_temp_c() is None
        assert host.load1() is None
    finally:
        host.close()


def test_an_unreadable_zone_is_no_temperature(tmp_path: Path) -> None:
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("not a number\n")
    host = HostSensors(tmp_path, thermal=tmp_path / "thermal")
    try:
        assert host.cpu_temp_c() is None
    finally:
        host.close()
