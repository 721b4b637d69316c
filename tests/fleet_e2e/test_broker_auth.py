"""A broker that takes no anonymous client: TLS with its own CA and a password per client.
The gateway (batches and control) and ``simpul fleet serve`` log in with their settings; a
client without the password, or without TLS, is refused."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from tests.fleet_e2e.conftest import City
from tests.support import eventually

pytestmark = pytest.mark.slow


def _pki(where: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "simpul test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = where / "ca.pem", where / "server.pem", where / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _connects(port: int, *, ca: Path | None, user: str | None, password: str | None) -> bool:
    result: list[bool] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{os.getpid()}")
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    if user is not None:
        client.username_pw_set(user, password)

    def on_connect(c: mqtt.Client, u: object, f: object, reason: object, p: object) -> None:
        result.append(not reason.is_failure)  # type: ignore[attr-defined]
        done.set()

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port)
    except (OSError, ssl.SSLError):
        return False
    client.loop_start()
    try:
        done.wait(5)
        return bool(result and result[0])
    finally:
        client.loop_stop()
        client.disconnect()


async def test_gateways_and_the_fleet_log_in_with_tls_and_passwords_and_strangers_do_not(
    city: City,
) -> None:
    ca, cert, key = _pki(city.root)
    passwords = city.root / "mosquitto.passwd"
    for user, secret in (("gw-takengon-1", "gw secret"), ("fleet", "fleet secret")):
        subprocess.run(  # noqa: ASYNC221 (a quick local tool, before anything runs)
            ["mosquitto_passwd", "-b", *(["-c"] if user.startswith("gw") else []),
             str(passwords), user, secret],
            check=True, capture_output=True,
        )  # fmt: skip
    city.broker.stop()
    city.broker.config.write_text(
        f"listener {city.broker.port} 127.0.0.1\n"
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {passwords}\n"
        f"persistence false\nlog_dest file {city.broker.log}\n"
        # Run as root, mosquitto drops to its own user, which may not read the test's files.
        "user root\n"
    )
    city.broker.start()
    (city.root / "gw.password").write_text("gw secret\n")
    (city.root / "fleet.password").write_text("fleet secret\n")
    gateway = city.add_gateway("Takengon")
    gateway.env.update({
        "SIMPUL_GATEWAY__BROKER__ADDRESS": f"127.0.0.1:{city.broker.port}",  # TLS end to end
        "SIMPUL_GATEWAY__BROKER__USERNAME": "gw-takengon-1",
        "SIMPUL_GATEWAY__BROKER__PASSWORD_FILE": str(city.root / "gw.password"),
        "SIMPUL_GATEWAY__BROKER__TLS_CA_FILE": str(ca),
    })  # fmt: skip
    await asyncio.to_thread(gateway.start)
    city.serve_args = ["--username", "fleet", "--password-file", str(city.root / "fleet.password"),
                       "--tls-ca", str(ca)]  # fmt: skip
    await asyncio.to_thread(city.serve)

    def state_seen() -> bool:
        with city.store() as store:
            found = store.gateway("gw-takengon-1")
        return found is not None and found.last_state is not None

    assert await eventually(state_seen, 30), (city.serve_log(), gateway.stderr_text()[-2000:])
    assert "gw secret" not in gateway.stderr_text()
    port = city.broker.port
    assert _connects(port, ca=ca, user="fleet", password="fleet secret")
    assert not _connects(port, ca=ca, user=None, password=None)  # anonymous
    assert not _connects(port, ca=ca, user="fleet", password="guess")  # wrong password
    assert not _connects(port, ca=None, user="fleet", password="fleet secret")  # no TLS
