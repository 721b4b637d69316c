"""``simpul board flash`` end to end: a blank emulated ESP32 on the real MicroPython VM, its
serial port as an RFC 2217 server (DTR/RTS on EN/IO0), a real fleet.db and a real gateway
process. One command writes MicroPython with esptool (entering the ROM by its own reset),
then the firmware; the board ends flashed (every file checked by SHA-256 against what was
compiled), enrolled, labelled and reporting, and the Wi-Fi password is nowhere it should
not be."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from fleet.board import provision
from fleet.store import FleetStore
from gateway.oscore.keys import BoardKey, KeyMaterial, encode_keys_file
from hw.engines.base import BoardRunner
from hw.esp_image import micropython_firmware_bin
from hw.flash import Flash
from hw.uart import auto_reset
from tests.board.conftest import GATEWAY, SITE, FleetFixture
from tests.support import ROOT, GatewayProcess, eventually, rfc2217_board, serial_board

PASSWORD = "kopi-Gayo-7731!"
BOARD_ID = "tkg-air-0001"
#: The board samples every 0.3 s and retries soon, so its first reading comes quickly.
QUICK = ["interval_s=0.3", "coap_ack_timeout_ms=300", "retry_max_s=1", "watchdog_ms=60000"]


@pytest.fixture
def gateway(tmp_path: Path, fleet: FleetFixture) -> Iterator[GatewayProcess]:
    """The site's gateway, speaking only OSCORE, with a courier standing in for the fleet's
    control channel (tests/fleet_e2e covers that path): each key fleet.db holds for this
    gateway's boards goes to it through ``simpul gateway boards import``."""
    gw = GatewayProcess(
        tmp_path / "gw", gateway_id=GATEWAY, site=SITE,
        env={"SIMPUL_GATEWAY__SECURITY__PLAIN_COAP": "false",
             "SIMPUL_GATEWAY__SECURITY__RELOAD_INTERVAL_MS": "100"},
    )  # fmt: skip
    gw.start()
    stop = threading.Event()
    courier = threading.Thread(target=_carry_keys, args=(fleet.db, gw, stop), daemon=True)
    courier.start()
    try:
        yield gw
    finally:
        stop.set()
        courier.join()
        gw.close()


def _carry_keys(db: Path, gw: GatewayProcess, stop: threading.Event) -> None:
    carried: dict[str, str] = {}
    keys_file = gw.state_dir.parent / "carried.keys.json"
    while not stop.wait(0.2):
        with FleetStore(db, create=False) as store:
            keys = {
                b.board_id: found[0]
                for b in store.boards(gateway_id=GATEWAY)
                if (found := store.board_key(b.board_id)) is not None
            }
        if {b: k.fingerprint for b, k in keys.items()} == carried:
            continue
        keys_file.write_bytes(encode_keys_file([BoardKey(b, k) for b, k in keys.items()]))
        subprocess.run(
            [sys.executable, "-m", "fleet.cli", "gateway", "boards", "import", str(keys_file),
             "--state-dir", str(gw.state_dir)],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        carried = {b: k.fingerprint for b, k in keys.items()}


async def simpul(*args: str) -> tuple[int, str, str, list[str]]:
    """``simpul ARGS`` as its own process: (exit code, stdout, stderr, its argv as the kernel
    saw it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleet.cli", *args,
        cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")  # noqa: ASYNC240
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), [a.decode() for a in argv]


@pytest.mark.slow  # about a minute: esptool over RFC 2217 waits ~0.1 s per timeout change
async def test_a_blank_board_becomes_an_enrolled_reporting_node_in_one_command(
    tmp_path: Path, fleet: FleetFixture, gateway: GatewayProcess
) -> None:
    wifi = tmp_path / "wifi.txt"
    wifi.write_text(f"ssid=kantor-camat\npassword={PASSWORD}\n")
    micropython = tmp_path / "ESP32_GENERIC-v1.27.0.bin"
    micropython.write_bytes(micropython_firmware_bin())
    host, port = gateway.address
    async with rfc2217_board("mpy", tmp_path / "boards", blank=True) as board:
        assert board.rfc2217_url is not None
        code, out, err, argv = await simpul(
            "board", "flash", board.rfc2217_url, "--install-micropython", str(micropython),
            "--kind", "air", "--site", SITE,
            "--gateway", GATEWAY, "--gateway-address", f"{host}:{port}",
            "--board-id", BOARD_ID, "--fleet-dir", str(fleet.dir), "--wifi-file", str(wifi),
            "--label", str(tmp_path / "label"), "--operator", "ani",
            *(arg for pair in QUICK for arg in ("--set", pair)), "--wait", "60",
        )  # fmt: skip
        assert code == 0, err + out
        verdict = out.strip().splitlines()
        assert len(verdict) == 1, out
        assert verdict[0].startswith(f"OK: {BOARD_ID} (air, {SITE}) flashed")
        assert "MicroPython written on the ESP32" in err
        assert "acknowledged its first reading" in verdict[0]
        flash = board.root / "flash"
        assert_files_verified(flash)
        assert board.config["board_id"] == BOARD_ID  # the boot after the flash read it
        console = (board.root / "console.log").read_text()

        # The same board again: fleet.db would refuse it, so nothing is erased or written,
        # and esptool's reset puts it back to running what it had.
        boots, flashed = board.record.boots, _flash_files(board)
        code, again, err2, _ = await simpul(
            "board", "flash", board.rfc2217_url, "--install-micropython", str(micropython),
            "--kind", "air", "--site", SITE, "--gateway", GATEWAY,
            "--gateway-address", f"{host}:{port}", "--board-id", BOARD_ID,
            "--fleet-dir", str(fleet.dir),
        )  # fmt: skip
        assert code == 1, again + err2
        assert f"board {BOARD_ID} is already enrolled: nothing written" in err2
        assert "MicroPython written" not in err2
        assert await eventually(lambda: board.record.boots > boots, 30)
        assert _flash_files(board) == flashed

    # Enrolled through the audited path, and listed by the fleet's own command.
    with FleetStore(fleet.db, create=False) as store:
        enrolled = store.board(BOARD_ID)
        audit = store.audit_entries()
    assert enrolled is not None
    assert (enrolled.kind, enrolled.site_id, enrolled.gateway_id) == ("air", SITE, GATEWAY)
    assert [(e.operator, e.action, e.target, e.result) for e in audit][-1] == (
        "ani", "board.add", BOARD_ID, "ok"
    )  # fmt: skip
    code, listing, _, _ = await simpul("fleet", "boards", "--fleet-dir", str(fleet.dir))
    assert code == 0
    assert BOARD_ID in listing
    # The gateway stored its readings under its new id.
    assert any(board_id == BOARD_ID for board_id, _, _ in gateway.stored())

    # The label's QR code decodes to the enrolment.
    found = zxingcpp.read_barcodes(Image.open(tmp_path / "label" / f"{BOARD_ID}.png"))
    assert len(found) == 1
    decoded = json.loads(found[0].text)
    assert decoded == {"id": BOARD_ID, "kind": "air", "site": SITE,
                       "enrolled": decoded["enrolled"]}  # fmt: skip
    assert (tmp_path / "label" / f"{BOARD_ID}.pdf").read_bytes().startswith(b"%PDF-")

    # The board's OSCORE key is on its flash and in fleet.db, the same; the gateway took
    # its readings under it (plain CoAP is off there).
    on_board = KeyMaterial.from_json(json.loads((flash / "oscore.json").read_text()))
    with FleetStore(fleet.db, create=False) as store:
        assert store.board_key(BOARD_ID) == (on_board, 1)
    assert on_board.sid == provision.sender_id(BOARD_ID)
    assert audit[-1].detail["oscore_key"] == on_board.fingerprint
    # The Wi-Fi password went to the board's secrets file only; no secret was shown.
    secrets = json.loads((flash / "secrets.json").read_text())
    assert secrets == {"wifi_ssid": secrets["wifi_ssid"], "wifi_password": PASSWORD}
    for where, text in {
        "argv": " ".join(argv), "stdout": out, "stderr": err, "console": console,
        "gateway log": gateway.stderr_text(), "config": (flash / "config.json").read_text(),
    }.items():  # fmt: skip
        assert PASSWORD not in text, f"the Wi-Fi password is in the {where}"
        assert on_board.secret.hex() not in text, f"the board's OSCORE key is in the {where}"


def assert_files_verified(flash: Path) -> None:
    """Every file on the board's flash is the one compiled here, by SHA-256."""
    compiled = provision.compile_firmware()
    identity = provision.Identity(BOARD_ID, "air", SITE, GATEWAY, "h", 1, b"\0" * 32)
    expected = provision.board_files(identity, {}, compiled)
    checked = 0
    for file in expected:
        if file.path.endswith((".mpy", ".py")):
            on_board = (flash / file.path.lstrip("/")).read_bytes()
            assert hashlib.sha256(on_board).hexdigest() == file.sha256, file.path
            checked += 1
    assert checked >= 20
    assert not list(flash.rglob("*.part"))
    assert json.loads((flash / "slots.json").read_text())["active"] == "a"


async def test_flash_refuses_a_board_that_does_not_run_micropython(
    tmp_path: Path, fleet: FleetFixture
) -> None:
    # The CPython engine is honest: its REPL is CPython's, which loads no .mpy files.
    async with serial_board("cpython", tmp_path / "boards") as board:
        assert board.serial_path is not None
        before = (board.root / "flash" / "config.json").read_bytes()
        code, _, err, _ = await simpul(
            "board", "flash", board.serial_path, "--kind", "air", "--site", SITE,
            "--gateway", GATEWAY, "--fleet-dir", str(fleet.dir),
        )  # fmt: skip
        assert code == 1
        errors = [line for line in err.splitlines() if line.startswith("simpul board flash:")]
        assert len(errors) == 1
        assert "not MicroPython" in errors[0]
        assert (board.root / "flash" / "config.json").read_bytes() == before
    with FleetStore(fleet.db, create=False) as store:
        assert store.boards() == []


def _flash_files(board: BoardRunner) -> dict[str, bytes]:
    root = board.root / "flash"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
            and not str(p.relative_to(root)).startswith("data/")}  # fmt: skip


async def test_a_nearly_full_flash_is_refused_before_anything_is_written(
    tmp_path: Path, fleet: FleetFixture
) -> None:
    async with serial_board("mpy", tmp_path / "boards") as board:
        assert board.serial_path is not None
        # 16 kB left: the firmware needs far more.
        board.faults.flash.capacity_bytes = Flash(board.root / "flash").used_bytes() + 16 * 1024
        before = _flash_files(board)
        code, out, err, _ = await simpul(
            "board", "flash", board.serial_path, "--kind", "air", "--site", SITE,
            "--gateway", GATEWAY, "--board-id", BOARD_ID, "--fleet-dir", str(fleet.dir),
        )  # fmt: skip
        assert code == 1, out + err
        errors = [line for line in err.splitlines() if line.startswith("simpul board flash:")]
        assert len(errors) == 1, err
        assert "kB free, the files need" in errors[0]
        assert "nothing was written" in errors[0]
        assert _flash_files(board) == before
    with FleetStore(fleet.db, create=False) as store:
        assert store.boards() == []


async def test_a_reset_mid_transfer_ends_in_a_message_and_the_board_boots_its_old_files(
    tmp_path: Path, fleet: FleetFixture
) -> None:
    # What toggling DTR/RTS does through a dev board's auto-reset circuit: EN goes low.
    assert auto_reset(dtr=False, rts=True) == (False, True)
    async with rfc2217_board("mpy", tmp_path / "boards") as board:
        assert board.rfc2217_url is not None
        assert board.chip is not None
        before = _flash_files(board)
        boots = board.record.boots
        flash = asyncio.create_task(simpul(
            "board", "flash", board.rfc2217_url, "--kind", "air", "--site", SITE,
            "--gateway", GATEWAY, "--board-id", BOARD_ID, "--fleet-dir", str(fleet.dir),
        ))  # fmt: skip
        staging = await eventually(
            lambda: any((board.root / "flash").rglob("*.part")), 60, step=0.01
        )
        assert staging, "the transfer never started"
        await board.chip.press_en()
        code, out, err, _ = await flash
        assert code == 1, out + err
        errors = [line for line in err.splitlines() if line.startswith("simpul board flash:")]
        assert len(errors) == 1, err
        assert "reset" in errors[0]
        # The board boots what it had: no half-sent file is in use.
        assert await eventually(lambda: board.record.boots > boots, 30)
        assert {k: v for k, v in _flash_files(board).items() if not k.endswith(".part")} == before
    with FleetStore(fleet.db, create=False) as store:
        assert store.boards() == []


def test_the_wifi_file_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "wifi"
    path.write_text("# pump house\nssid = pompa-2\npassword = a=b c\n")
    wifi = provision.read_wifi_file(path)
    assert (wifi.ssid, wifi.password) == ("pompa-2", "a=b c")
    assert "a=b c" not in repr(wifi)
    path.write_text("ssid=x\n")
    with pytest.raises(ValueError, match="password"):
        provision.read_wifi_file(path)
