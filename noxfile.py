"""Sessions for simpul: tests, lint, typecheck, firmware, bench, demo.

Run with nox, or with plain ``python3 noxfile.py [-s SESSION]`` on a fresh machine: that
bootstraps nox into ``.nox/_bootstrap`` first (see the README's Quick start).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _bootstrap() -> None:
    """Install nox into a private venv and re-run this file under it (stdlib only)."""
    venv = ROOT / ".nox" / "_bootstrap"
    py = venv / "bin" / "python"
    if not py.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        except subprocess.CalledProcessError:
            # Debian ships venv's pip separately.
            _apt_install(["python3-venv"])
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "nox>=2024.4"], check=True)
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


def _apt_install(packages: list[str]) -> None:
    """Install Debian packages if missing; as root directly, else through sudo."""
    missing = [
        p
        for p in packages
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
        ).stdout.strip()
        != "install ok installed"
    ]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


if __name__ == "__main__":
    try:
        import nox
    except ImportError:
        _bootstrap()
    sys.exit(nox.main())  # type: ignore[func-returns-value]

import nox  # noqa: E402

nox.options.sessions = ["lint", "typecheck", "firmware", "tests"]
nox.options.reuse_existing_virtualenvs = True

# What the test suite needs from outside PyPI: libcoap's coap-client as an independent CoAP
# peer, Mosquitto as a real broker, tmux to drive the TUI, Chromium to open the console that
# `simpul fleet --serve` serves (driven by playwright, which never downloads a browser).
# faketime and a C compiler: the clock-jump test (tests/integration/test_clock_jump.py).
APT_PACKAGES = ["libcoap3-bin", "mosquitto", "tmux", "chromium", "faketime", "gcc"]
# What `simpul demo` runs besides Python: its private broker.
DEMO_APT_PACKAGES = ["mosquitto"]


def _npm_ci(session: nox.Session) -> None:
    """Install the MicroPython VM (npm) exactly as package-lock.json pins it, once."""
    stamp = ROOT / "node_modules" / ".package-lock.json"
    lock = ROOT / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    session.run("npm", "ci", "--no-audit", "--no-fund", external=True)


def _install(session: nox.Session, extra: str) -> None:
    session.install("-e", f".[{extra}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole pytest suite: unit, integration, interop, fault and VM tests."""
    _apt_install(APT_PACKAGES)
    _npm_ci(session)
    _install(session, "test")
    # Every run's log names its slowest tests, so a new slow one is seen where it lands.
    session.run("pytest", *(session.posargs or ["-q", "--durations=30"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.17,<0.18")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Strict mypy on the host packages and tests; the firmware against the ESP32 stubs."""
    _install(session, "dev")
    session.run("mypy")
    session.run("python", "-m", "hw.firmware_tools.typecheck")


@nox.session
def firmware(session: nox.Session) -> None:
    """Compile every firmware file with mpy-cross; its unit tests and heap budget on the VM."""
    _npm_ci(session)
    _install(session, "test")
    session.run("python", "-m", "hw.firmware_tools.build", "--check")
    session.run(
        "pytest", "-q", "tests/firmware", "tests/hw_vm", "-k", "micropython_vm", *session.posargs
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: figures go to bench-results/ with the machine and the method."""
    _apt_install(APT_PACKAGES)
    _npm_ci(session)
    _install(session, "test")
    session.run("python", "-m", "tests.bench", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The whole system on this machine with the fleet console on top (q stops it)."""
    _apt_install(DEMO_APT_PACKAGES)
    _install(session, "test")
    session.run("simpul", "demo", *session.posargs)
