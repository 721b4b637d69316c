"""``simpul board …``: the technician's commands, from a blank ESP32 to a reporting node.

``flash PORT --kind K --site S --gateway G`` installs the firmware and the board's identity,
enrols it (fleet.db, or ``--offline FILE``), prints a label, resets the board and follows
its console until the gateway has acknowledged its first reading, then prints one verdict
line. ``info``, ``shell``, ``logs``, ``config`` and ``reset`` take a PORT too; ``list``
names the serial ports that look like ESP32 boards. Every error is one line on stderr that
says what to do (exit 1); a transfer shows a progress bar when stderr is a terminal and a
line per file otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeAlias

from fleet.board import provision
from fleet.board.enrol import Enrolment
from fleet.board.errors import BoardToolError, NotAcknowledged
from fleet.board.ports import list_board_ports, open_port
from fleet.board.repl import RawRepl
from fleet.board.transfer import BoardFile, Transfer
from fleet.errors import FleetError
from fleet.keys import FLEET_DIR_ENV, default_fleet_dir

Actions: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
DEFAULT_GATEWAY_PORT: Final = 5683
DEFAULT_WAIT_S: Final = 180.0


# --- progress ------------------------------------------------------------------------------


class Progress:
    """Transfer progress on stderr: a rich bar on a terminal, else one line per file."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        self._reported: set[str] = set()
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()

    def __call__(self, what: str, done: int, total: int) -> None:
        if what.startswith("bytes lost"):
            self.say(what)
            return
        if self._bar is not None:
            task = self._tasks.get(what)
            if task is None:
                task = self._tasks[what] = self._bar.add_task(what, total=total)
            self._bar.update(task, completed=done)
        elif done >= total and what not in self._reported:
            self._reported.add(what)
            print(f"  {what}: {total} bytes sent", file=sys.stderr, flush=True)

    def say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextlib.contextmanager
def _board(port: str) -> Iterator[RawRepl]:
    """The board on ``port``, in its raw REPL; the port closed afterwards."""
    serial_port = open_port(port)
    try:
        repl = RawRepl(serial_port, port)
        repl.enter()
        yield repl
    finally:
        serial_port.close()


def _runs(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (BoardToolError, FleetError, ValueError, OSError) as exc:
            print(f"simpul board {args.board_command}: {exc}", file=sys.stderr)
            return 1

    return run


# --- flash ---------------------------------------------------------------------------------


def _gateway_address(text: str | None, gateway_id: str) -> tuple[str, int]:
    """``HOST[:PORT]``; by default the gateway's id as its host name."""
    host, _, port = (text or gateway_id).rpartition(":") if ":" in (text or "") else (
        text or gateway_id, "", "")  # fmt: skip
    if not port:
        return host, DEFAULT_GATEWAY_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--gateway-address {text!r}: write HOST or HOST:PORT")
    return host, int(port)


def _wifi(args: argparse.Namespace) -> provision.Wifi | None:
    if args.wifi_file is not None:
        wifi = provision.read_wifi_file(args.wifi_file)
        return provision.Wifi(args.wifi, wifi.password) if args.wifi else wifi
    if args.wifi:
        return provision.Wifi(args.wifi, getpass.getpass(f"Wi-Fi password for {args.wifi}: "))
    return None


def _root_key(args: argparse.Namespace) -> bytes:
    from fleet import keyfiles

    path = args.root_pub or (args.fleet_dir or default_fleet_dir()) / "root.pub"
    try:
        return keyfiles.load_public_key(path)
    except (OSError, ValueError, FleetError) as exc:
        raise ValueError(
            f"cannot read the fleet's root public key {path} ({exc}): pass --root-pub FILE"
        ) from None


def _precheck(fleet_dir: Path, enrolment: Enrolment) -> None:
    """Refuse before writing anything when fleet.db would refuse the enrolment."""
    from fleet.store import DB_NAME, FleetStore

    with FleetStore(fleet_dir / DB_NAME, create=False) as store:
        if store.board(enrolment.board_id) is not None:
            raise ValueError(f"board {enrolment.board_id} is already enrolled: nothing written")
        sid = provision.sender_id(enrolment.board_id)
        holder = store.sid_owner(sid)
        if holder is not None:
            raise ValueError(
                f"board {enrolment.board_id}'s OSCORE Sender ID {sid.hex()} is already board"
                f" {holder}'s: give it another --board-id; nothing written"
            )
        gateways = {g.gateway_id: g for g in store.gateways()}
        gateway = gateways.get(enrolment.gateway_id)
        if gateway is None or gateway.site_id != enrolment.site:
            raise ValueError(
                f"the fleet has no gateway {enrolment.gateway_id} at site {enrolment.site}:"
                " nothing written"
            )


def _follow_first_ack(repl: RawRepl, board_id: str, within: float, progress: Progress) -> float:
    """Seconds from reset to the gateway's first acknowledgement (console ``A first last``)."""
    started = time.monotonic()
    booted = False
    last = ""

    def line(text: str) -> bool:
        nonlocal booted, last
        if text.startswith("simpul ") and f" board {board_id} " in text:
            booted = True
            progress.say(f"  booted: {text}")
        elif booted and text.startswith("A "):
            return True
        elif text.strip():
            last = text.strip()
        return False

    if repl.follow(line, within=within):
        return time.monotonic() - started
    if not booted:
        raise NotAcknowledged(
            f"the board never started its firmware within {within:.0f} s (last console line:"
            f" {last[:80]!r}): run 'simpul board logs' to see why"
        )
    raise NotAcknowledged(
        f"the board runs but the gateway acknowledged no reading within {within:.0f} s (last"
        f" console line: {last[:80]!r}): check the gateway's address and the Wi-Fi"
    )


def _board_id(args: argparse.Namespace, unique_id: str) -> str:
    """``--board-id``, else SITE-KIND- and the last 6 hex digits of the chip's unique id
    (its MAC on an ESP32), so the same board gets the same id offline too."""
    return str(args.board_id or f"{args.site}-{args.kind}-{unique_id[-6:] or 'x'}")


def _enrolment(args: argparse.Namespace, board_id: str) -> Enrolment:
    """The board's enrolment, with fresh OSCORE key material for it."""
    return Enrolment(
        board_id, args.kind, args.site, args.gateway, int(time.time()),
        _technician(args.operator), provision.new_board_key(board_id),
    )  # fmt: skip


def _flash(args: argparse.Namespace) -> int:
    if args.kind not in ("air", "water", "bin"):
        raise ValueError(f"--kind {args.kind!r}: one of air, water, bin")
    fleet_dir: Path = args.fleet_dir or default_fleet_dir()
    settings = provision.parse_settings(args.set)
    host, gport = _gateway_address(args.gateway_address, args.gateway)
    root_key = _root_key(args)
    wifi = _wifi(args)
    progress = Progress()
    try:
        if args.install_micropython is not None:
            from fleet.board.esp import install_micropython

            def precheck(unique_id: str) -> None:
                # Before the chip is erased: a board fleet.db would refuse keeps what it has.
                if args.offline is None:
                    _precheck(fleet_dir, _enrolment(args, _board_id(args, unique_id)))

            chip = install_micropython(
                args.port, args.install_micropython, progress, before_write=precheck
            )
            progress.say(f"MicroPython written on the {chip}")
            time.sleep(1.0)  # the board boots MicroPython
        progress.say("compiling the firmware")
        compiled = provision.compile_firmware()
        with _board(args.port) as repl:
            facts = repl.facts()
            provision.check_firmware(facts, compiled, args.port)
            board_id = _board_id(args, facts.unique_id)
            enrolment = _enrolment(args, board_id)
            if args.offline is None:
                _precheck(fleet_dir, enrolment)
            identity = provision.Identity(
                board_id, args.kind, args.site, args.gateway, host, gport, root_key,
                enrolment.oscore, wifi,
            )  # fmt: skip
            files = provision.board_files(identity, settings, compiled)
            progress.say(
                f"board {board_id}: MicroPython {facts.version_text} on {facts.platform},"
                f" writing {len(files)} files"
            )
            transfer = Transfer(repl, progress)
            transfer.check_space(files)
            staged = [transfer.stage(f) for f in files]
            transfer.commit(staged)
            # Readings buffered under the board's old identity must not go out under its new.
            # (A fresh MicroPython has no /data at all.)
            repl.exec(
                "try:\n"
                "    _b = os.listdir('/data/buf')\n"
                "except OSError:\n"
                "    _b = []\n"
                "for _n in _b:\n"
                "    os.remove('/data/buf/' + _n)\n"
            )
            progress.say(f"  {len(staged)} files verified by SHA-256 on the board and in place")
            if args.offline is not None:
                from fleet.board.enrol import write_enrolment

                write_enrolment(fleet_dir, enrolment, args.offline)
                enrolled = (
                    f"enrolment file {args.offline} written"
                    " (import it with 'simpul fleet boards import')"
                )
            else:
                from fleet.board.enrol import enrol

                enrol(fleet_dir, enrolment, operator=enrolment.technician)
                enrolled = f"enrolled in {fleet_dir / 'fleet.db'}"
            progress.say(f"  {enrolled}")
            if args.label is not None:
                from fleet.board.label import write_label

                png, pdf = write_label(enrolment, args.label)
                progress.say(f"  label {png} and {pdf}")
            repl.reset()
            progress.say("  board restarted, waiting for the gateway's first acknowledgement")
            seconds = _follow_first_ack(repl, board_id, args.wait, progress)
    except NotAcknowledged as exc:
        progress.close()
        print(f"NOT REPORTING: {exc}")
        return 1
    finally:
        progress.close()
    print(
        f"OK: {board_id} ({args.kind}, {args.site}) flashed, {enrolled.split(' (')[0]}, and"
        f" reporting: gateway {args.gateway} acknowledged its first reading {seconds:.1f} s"
        " after the restart"
    )
    return 0


def _technician(explicit: str | None) -> str:
    from fleet.inventory import operator_name

    return operator_name(explicit)


# --- the other commands -----------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    with _board(args.port) as repl:
        facts = repl.facts()
        config_text = repl.exec(
            "try:\n    print(open('/config.json').read())\nexcept OSError:\n    print('{}')\n"
        )
    config = json.loads(config_text or b"{}")
    document = {
        "port": args.port,
        "micropython": facts.version_text if facts.implementation == "micropython" else None,
        "implementation": facts.implementation,
        "platform": facts.platform,
        "unique_id": facts.unique_id,
        "flash_free": facts.flash_free,
        "flash_size": facts.flash_size,
        "heap_free": facts.heap_free,
        "board_id": config.get("board_id"),
        "kind": config.get("kind"),
        "site": config.get("site"),
        "gateway": f"{config.get('gateway_host')}:{config.get('gateway_port', 5683)}"
        if config.get("gateway_host")
        else None,
    }
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in document)
        for key, value in document.items():
            print(f"{key.replace('_', ' '):{width}}  {'-' if value is None else value}")
    return 0


def _config(args: argparse.Namespace) -> int:
    with _board(args.port) as repl:
        transfer = Transfer(repl)
        config = json.loads(transfer.get("/config.json"))
        if args.set:
            config.update(provision.parse_settings(args.set))
            provision.check_config(config)
            data = json.dumps(config, indent=1).encode()
            transfer.put([BoardFile("/config.json", data)])
            print(
                "config written and verified; it applies at the next restart (simpul board reset)"
            )
    print(json.dumps(config, indent=1, sort_keys=True))
    return 0


def _reset(args: argparse.Namespace) -> int:
    with _board(args.port) as repl:
        repl.reset()
    print(f"board on {args.port} restarted")
    return 0


def _logs(args: argparse.Namespace) -> int:
    serial_port = open_port(args.port)
    try:
        repl = RawRepl(serial_port, args.port)

        def line(text: str) -> bool:
            print(text, flush=True)
            return False

        repl.follow(line, within=args.seconds if args.seconds else float("inf"))
    finally:
        serial_port.close()
    return 0


def _shell(args: argparse.Namespace) -> int:
    from serial.tools.miniterm import Miniterm

    serial_port = open_port(args.port, timeout=1)
    term = Miniterm(serial_port, echo=False, eol="crlf")
    term.exit_character = chr(0x1D)  # Ctrl-]
    term.set_rx_encoding("utf-8")
    term.set_tx_encoding("utf-8")
    print(f"board on {args.port}: Ctrl-C stops its program, Ctrl-] leaves", file=sys.stderr)
    term.start()
    with contextlib.suppress(KeyboardInterrupt):
        term.join(True)
    term.join()
    term.close()
    return 0


def _list(args: argparse.Namespace) -> int:
    ports = list_board_ports()
    if args.json:
        found = [
            {"port": p.device, "bridge": p.bridge, "usb": p.usb_id, "serial": p.serial_number}
            for p in ports
        ]
        print(json.dumps(found, indent=2))
    elif not ports:
        print("no ESP32 board found: plug one in (a data cable, not a charge-only one)")
    else:
        for p in ports:
            print(f"{p.device}  {p.bridge} ({p.usb_id})  {p.serial_number or ''}".rstrip())
    return 0


# --- the parsers ---------------------------------------------------------------------------


def add_commands(groups: Actions) -> None:
    """``simpul board flash|info|shell|logs|config|reset|list``."""
    board = groups.add_parser(
        "board",
        help="the technician's serial tool: flash, enrol and check a board over USB",
        description="Flash, provision, enrol and check ESP32 boards over their USB serial port"
        " (PORT: /dev/ttyUSB0, rfc2217://host:port, socket://host:port).",
    )
    actions = board.add_subparsers(dest="board_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        parser = actions.add_parser(name, help=text, description=text)
        parser.set_defaults(handler=_runs(handler))
        if name != "list":
            parser.add_argument("port", metavar="PORT", help="the board's serial port")
        return parser

    flash = command(
        "flash",
        _flash,
        "install the firmware and the board's identity, enrol it, restart it and wait until"
        " the gateway acknowledges its first reading",
    )
    flash.add_argument("--kind", required=True, help="air, water or bin")
    flash.add_argument("--site", required=True, help="the site the board is at")
    flash.add_argument("--gateway", required=True, help="the gateway it reports to (its id)")
    flash.add_argument(
        "--gateway-address",
        metavar="HOST[:PORT]",
        help="where the board reaches that gateway (default: its id as host name, port 5683)",
    )
    flash.add_argument("--board-id", help="the board's id (default: SITE-KIND-<chip id>)")
    flash.add_argument("--wifi", metavar="SSID", help="Wi-Fi network; the password is asked for")
    flash.add_argument(
        "--wifi-file",
        type=Path,
        metavar="FILE",
        help="a file with ssid=... and password=... lines (never put a password on the"
        " command line)",
    )
    where = flash.add_mutually_exclusive_group()
    where.add_argument(
        "--fleet-dir",
        type=Path,
        help=f"the fleet directory to enrol in (default: ${FLEET_DIR_ENV}, else"
        " $XDG_DATA_HOME/simpul/fleet)",
    )
    where.add_argument(
        "--offline",
        type=Path,
        metavar="FILE",
        help="no fleet.db here: write a signed enrolment file to import later"
        f" (signed with the operator key of ${FLEET_DIR_ENV})",
    )
    flash.add_argument("--root-pub", type=Path, help="the fleet's root public key file")
    flash.add_argument("--label", type=Path, metavar="DIR", help="write a PNG and PDF label here")
    flash.add_argument(
        "--install-micropython",
        type=Path,
        metavar="FIRMWARE.bin",
        help="first erase the board and write this MicroPython image (esptool)",
    )
    flash.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="a config setting (repeatable)"
    )
    flash.add_argument("--operator", help="who flashes, for the audit log")
    flash.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        help="seconds to wait for the first acknowledged reading (%(default)s)",
    )

    info = command("info", _info, "what the board is: MicroPython, flash, heap, identity")
    info.add_argument("--json", action="store_true", help="one JSON document")
    command("shell", _shell, "a terminal on the board's REPL (Ctrl-] leaves)")
    logs = command("logs", _logs, "follow the board's console (its program keeps running)")
    logs.add_argument("--seconds", type=float, default=0, help="stop after this long")
    config = command("config", _config, "show the board's config, or change it with --set")
    config.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a setting")
    command("reset", _reset, "restart the board into its firmware")
    listing = command("list", _list, "the serial ports that look like ESP32 boards")
    listing.add_argument("--json", action="store_true", help="one JSON document")
