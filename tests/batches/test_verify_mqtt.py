"""``simpul verify --mqtt`` against a real Mosquitto on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from tests.batches.conftest import chain, write_public_key
from tests.mosquitto import Broker

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "simpul/kec-a/gw-1/batches"


def _publish(broker: Broker, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-publisher")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(TOPIC, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _start_verify(broker: Broker, key_file: Path, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleet.cli",
            "verify",
            "--key",
            str(key_file),
            "--mqtt",
            broker.address,
            "--topic",
            "simpul/+/+/batches",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    _wait_for_line(proc.stderr, b"simpul verify: subscribed to", proc)
    return proc


def _wait_for_line(stream: IO[bytes], wanted: bytes, proc: subprocess.Popen[bytes]) -> None:
    found = threading.Event()

    def read() -> None:
        line = stream.readline()
        if wanted in line:
            found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not found.wait(30):
        proc.kill()
        pytest.fail(f"simpul verify did not subscribe: {proc.communicate()}")


def test_verify_over_mqtt_accepts_a_complete_chain(
    tmp_path: Path, mosquitto: Broker, key: Ed25519PrivateKey
) -> None:
    key_file = write_public_key(tmp_path / "gw.pub", key)
    batches, _ = chain(key, 5, per_batch=4)
    proc = _start_verify(mosquitto, key_file, "--count", "5", "--timeout", "30")
    _publish(mosquitto, batches)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(out.splitlines()) == 20


def test_verify_over_mqtt_names_a_gap_and_a_tampered_batch(
    tmp_path: Path, mosquitto: Broker, key: Ed25519PrivateKey
) -> None:
    key_file = write_public_key(tmp_path / "gw.pub", key)
    batches, _ = chain(key, 6)
    tampered = batches[5][:-1] + bytes([batches[5][-1] ^ 1])
    proc = _start_verify(mosquitto, key_file, "--count", "4", "--timeout", "30", "--report")
    _publish(mosquitto, [batches[0], batches[1], batches[4], tampered])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"gap: gateway gw-1 batches 3..4 missing" in err
    assert b"bad_signature: batch 6 of gw-1" in err
    assert b"FAILED: 2 problem(s)" in out


def test_verify_over_mqtt_reports_too_few_batches_as_incomplete(
    tmp_path: Path, mosquitto: Broker, key: Ed25519PrivateKey
) -> None:
    key_file = write_public_key(tmp_path / "gw.pub", key)
    batches, _ = chain(key, 2)
    proc = _start_verify(mosquitto, key_file, "--count", "3", "--timeout", "2")
    started = time.monotonic()
    _publish(mosquitto, batches)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"incomplete: received 2 of 3 batches within 2.0 s" in err
    assert time.monotonic() - started < 30


def test_verify_without_a_broker_exits_2_naming_it(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    from tests.mosquitto import free_tcp_port

    key_file = write_public_key(tmp_path / "gw.pub", key)
    port = free_tcp_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet.cli",
            "verify",
            "--key",
            str(key_file),
            "--mqtt",
            f"127.0.0.1:{port}",
            "--topic",
            TOPIC,
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"cannot connect to MQTT broker 127.0.0.1:{port}".encode() in done.stderr
