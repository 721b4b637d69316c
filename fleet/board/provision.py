"""What ``simpul board flash`` writes on a board, and the checks before it does.

The files, all checked by SHA-256 on the board and put in place only once all are there
(``fleet.board.transfer``):

- ``/boot.py`` and ``/main.py`` (MicroPython runs only these two as source) and the rest of
  the boot part, ``/slots.mpy`` and ``/flashfs.mpy``: outside both application slots, which
  no update replaces (``hw.firmware_tools.BOOT_PART``);
- the application in slot A, ``/a/<module>.mpy``, compiled with mpy-cross as a release is;
- ``/slots.json``: slot A active, no trial;
- ``/config.json`` (``firmware/config.py``): board id, kind, site, the gateway's address, the
  fleet's root public key, and any ``--set KEY=VALUE``;
- ``/oscore.json``: the board's OSCORE key material (``gateway.oscore.keys``: a fresh 32-byte
  Master Secret, its Sender ID from :func:`sender_id`), which the fleet keeps too and seals
  to the board's gateway;
- ``/secrets.json``: the Wi-Fi credentials, if any.

Secrets are kept apart from the config so nothing that shows the config shows them; they are
never logged, printed or put on a command line.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleet.board.errors import WrongFirmware
from fleet.board.repl import BoardFacts
from fleet.board.transfer import BoardFile
from gateway.oscore.keys import KeyMaterial, encode_board_file, generate
from hw.firmware_tools import BOOT_PART, FIRMWARE_DIR, firmware_module

#: The oldest MicroPython whose .mpy files (version 6) the application is compiled for.
MIN_MICROPYTHON: Final = (1, 23, 0)
#: ``sys.platform`` of the boards this tool installs on: the ESP32, and the emulator's
#: MicroPython VM (MicroPython's WebAssembly port standing in for an ESP32).
PLATFORMS: Final = ("esp32", "webassembly")
#: Bytes of a Sender ID drawn from a board id: sent in every request, and unique by chance
#: (a clash is refused at enrolment) to one in 10**5 among 10,000 boards.
SENDER_ID_BYTES: Final = 5
SOURCE_AT_ROOT: Final = ("boot", "main")  # MicroPython runs these as .py only


@dataclass(frozen=True)
class Wifi:
    """Wi-Fi credentials; the password never shows in a repr."""

    ssid: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Identity:
    """Who the board is and where it reports."""

    board_id: str
    kind: str
    site: str
    gateway_id: str
    gateway_host: str
    gateway_port: int
    root_key: bytes  # the fleet's raw Ed25519 root public key
    oscore: KeyMaterial | None = field(repr=False, default=None)
    wifi: Wifi | None = None

    def config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """``/config.json``'s content, checked as the firmware checks it."""
        config: dict[str, Any] = dict(settings)
        config.update(
            board_id=self.board_id,
            kind=self.kind,
            site=self.site,
            gateway_host=self.gateway_host,
            gateway_port=self.gateway_port,
            root_key=self.root_key.hex(),
        )
        check_config(config)
        return config

    def secrets(self) -> dict[str, Any]:
        secrets: dict[str, Any] = {}
        if self.wifi is not None:
            secrets["wifi_ssid"] = self.wifi.ssid
            secrets["wifi_password"] = self.wifi.password
        return secrets


def sender_id(board_id: str) -> bytes:
    """The board's OSCORE Sender ID: the first bytes of a hash of its id (fixed for life)."""
    return hashlib.sha256(b"simpul-sender-id\0" + board_id.encode()).digest()[:SENDER_ID_BYTES]


def new_board_key(board_id: str) -> KeyMaterial:
    """Fresh OSCORE key material for ``board_id``."""
    return generate(board_id, sender_id(board_id)).material


def read_wifi_file(path: Path) -> Wifi:
    """``ssid=NAME`` and ``password=SECRET`` lines (``#`` comments allowed)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the Wi-Fi file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip().lower()] = value.strip()
    if not values.get("ssid") or "password" not in values:
        raise ValueError(f"the Wi-Fi file {path} needs an ssid=... line and a password=... line")
    return Wifi(values["ssid"], values["password"])


def compile_firmware(arch: str = "xtensawin") -> dict[str, bytes]:
    """Every firmware module compiled with mpy-cross: {"app": b"M...", ...}."""
    from hw.firmware_tools.build import build

    with tempfile.TemporaryDirectory(prefix="simpul-board-") as tmp:
        built, failed = build(FIRMWARE_DIR, Path(tmp), arch)
        if failed:
            raise RuntimeError(f"mpy-cross refused {failed[0]}")
        return {path.stem: path.read_bytes() for path in built}


def check_firmware(facts: BoardFacts, compiled: Mapping[str, bytes], port: str) -> None:
    """:class:`WrongFirmware` unless the board runs a MicroPython that loads ``compiled``."""
    if facts.implementation != "micropython":
        raise WrongFirmware(
            f"the board on {port} runs {facts.implementation} {facts.version_text}, not"
            " MicroPython: install MicroPython for ESP32 first (--install-micropython FILE.bin)"
        )
    if facts.platform not in PLATFORMS:
        raise WrongFirmware(
            f"the board on {port} runs MicroPython for {facts.platform}, not for ESP32:"
            " is it the right board?"
        )
    header = next(iter(compiled.values()))[:3]
    # As MicroPython's loader checks: the .mpy version always; the sub-version only for
    # files with native code (an architecture in the header), which bytecode has not.
    abi = facts.mpy_abi
    wrong_abi = abi is not None and (
        abi & 0xFF != header[1] or (header[2] >> 2 != 0 and (abi >> 8) & 3 != header[2] & 3)
    )
    if facts.version < MIN_MICROPYTHON or wrong_abi:
        want = ".".join(str(v) for v in MIN_MICROPYTHON)
        raise WrongFirmware(
            f"the board on {port} runs MicroPython {facts.version_text}, which cannot load"
            f" this firmware (.mpy version {header[1]}): install MicroPython {want} or newer"
        )


def board_files(
    identity: Identity, settings: Mapping[str, Any], compiled: Mapping[str, bytes]
) -> list[BoardFile]:
    """Every file the board gets, in the order they are put in place: the application,
    the boot part, the slot state, the secrets, and the config last (a board without a
    config has no identity yet)."""
    files = [
        BoardFile(f"/a/{name}.mpy", data)
        for name, data in sorted(compiled.items())
        if name not in BOOT_PART
    ]
    for name in BOOT_PART:
        if name in SOURCE_AT_ROOT:
            files.append(BoardFile(f"/{name}.py", (FIRMWARE_DIR / f"{name}.py").read_bytes()))
        else:
            files.append(BoardFile(f"/{name}.mpy", compiled[name]))
    slots = {"active": "a", "trial": None, "trial_boots": 0}
    files.append(BoardFile("/slots.json", json.dumps(slots).encode()))
    if identity.oscore is not None:
        files.append(BoardFile("/oscore.json", encode_board_file(identity.oscore)))
    files.append(BoardFile("/secrets.json", json.dumps(identity.secrets()).encode()))
    files.append(
        BoardFile("/config.json", json.dumps(identity.config(settings), indent=1).encode())
    )
    return files


def parse_settings(pairs: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs; a value is JSON (``0.3``, ``[6, 18]``) or else text."""
    settings: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r}: write KEY=VALUE, e.g. interval_s=60")
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    return settings


def check_config(config: dict[str, Any]) -> None:
    """``ValueError`` naming the setting, unless the firmware's own parser takes ``config``
    (its ConfigError is the firmware's, not a ValueError)."""
    module = firmware_module("config")
    try:
        module.parse(json.dumps(config))
    except firmware_module("errors").ConfigError as exc:
        raise ValueError(f"the board would refuse this config: {exc}") from None
