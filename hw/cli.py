"""``simpul emulate`` and ``simpul demo``: the whole system on one machine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fleet.errors import FleetError
from fleet.keyfiles import load_public_key
from gateway.errors import BadBoardKeys
from gateway.oscore.keys import decode_keys_file
from hw.engines import ENGINES
from hw.engines.fleet import Fleet, cycle_config, plan_fleet
from hw.engines.mpy import vm_package


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default after its help, except where there is none to show (a flag, an
    option that is off unless given): those say in their help what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


class _InstallVm(argparse.Action):
    """``--install-vm``: install the MicroPython VM now and exit, whatever else was given."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        try:
            module = vm_package.install(say=lambda line: print(line, flush=True))
        except vm_package.VmError as e:
            parser.exit(1, f"simpul emulate: {e}\n")
        print(f"MicroPython VM {vm_package.VERSION} ready: {module}", flush=True)
        parser.exit(0)


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    emulate = groups.add_parser(
        "emulate",
        help="run emulated ESP32 boards against a gateway",
        description="Run N emulated sensor boards (the real firmware, emulated hardware) in "
        "this process, sending to a gateway. Each board's flash and serial console live "
        "under STATE_DIR/boards/<board id>/ and survive restarts.",
        formatter_class=DefaultsShown,
    )
    emulate.add_argument(
        "--gateway",
        type=host_port,
        required=True,
        metavar="HOST:PORT",
        help="the gateway's CoAP address, e.g. 127.0.0.1:5683 (simpul gateway run prints it)",
    )
    emulate.add_argument(
        "--boards",
        type=count,
        default=10,
        metavar="N",
        help="how many boards, spread over the sites and node kinds",
    )
    emulate.add_argument(
        "--cycle",
        type=positive,
        default=5.0,
        metavar="SECONDS",
        help="sampling interval of every board",
    )
    emulate.add_argument(
        "--duration",
        type=positive,
        metavar="SECONDS",
        help="stop after this long and print a summary; without it, run until Ctrl-C",
    )
    emulate.add_argument(
        "--state-dir",
        type=Path,
        default=Path("state/emulate"),
        metavar="DIR",
        help="where the boards' flash and consoles live",
    )
    emulate.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="seed of the fleet's layout and of every board's signals (same seed, same run)",
    )
    emulate.add_argument(
        "--root-pub",
        type=Path,
        metavar="KEY",
        help="the fleet's root public key (PEM or raw, e.g. FLEET_DIR/root.pub), written into "
        "the config of boards provisioned now, as a technician does: the boards then install "
        "releases their gateway offers (simpul gateway desired set); without it, no update",
    )
    emulate.add_argument(
        "--oscore-keys",
        type=Path,
        metavar="FILE",
        help="a keys file, as the gateway's security.keys_file reads it: every board named "
        "in it gets its key material on flash (/oscore.json) before it boots, as at "
        "provisioning, and speaks OSCORE to the gateway; the others speak plain CoAP, which "
        "only a gateway in lab mode (security.plain_coap) accepts",
    )
    emulate.add_argument(
        "--power-cut-at-write",
        type=count,
        metavar="N",
        help="fault: the power goes (SIGKILL of this process) in the middle of flash write N; "
        "without it, no power cut",
    )
    emulate.add_argument(
        "--engine",
        choices=ENGINES,
        default="cpython",
        help="cpython: every board in this process; mpy: each board on the real MicroPython "
        "VM (WebAssembly, under Node; see --install-vm)",
    )
    emulate.add_argument(
        "--serial",
        action="store_true",
        help="give every board a serial port on a pseudo-terminal with MicroPython's REPL "
        "(mpremote connect PTY ...); one line per board names its pty",
    )
    emulate.add_argument(
        "--rfc2217",
        action="store_true",
        help="also serve every board's serial port over RFC 2217 on 127.0.0.1, DTR/RTS wired "
        "to EN/IO0 as on a dev board, so esptool and pyserial can reset it and enter its ROM "
        "bootloader (esptool --port rfc2217://127.0.0.1:PORT --no-stub ...); one line per "
        "board names its URL",
    )
    emulate.add_argument(
        "--blank",
        action="store_true",
        help="boards fresh from the factory: nothing in their flash, the ROM's boot loop on "
        "their serial port until MicroPython is written (with --rfc2217: simpul board flash "
        "URL --install-micropython FIRMWARE.bin ...)",
    )
    emulate.add_argument(
        "--install-vm",
        action=_InstallVm,
        help=f"install the MicroPython VM that --engine mpy runs ({vm_package.PACKAGE} "
        f"{vm_package.VERSION}, with npm) into {vm_package.cache_dir()}, and exit; a clone "
        "can use `npm ci` instead",
    )
    emulate.set_defaults(handler=run_emulate)

    demo = groups.add_parser(
        "demo",
        help="the whole system on this machine, with the fleet console on top",
        description="Start the whole system on this machine: a private Mosquitto broker, "
        "fleet keys and fleet.db, one gateway per site of a regency's smart-city programme, "
        "the fleet manager (simpul fleet serve) and emulated boards enrolled in the fleet, "
        "and show it live in the fleet console (q quits). Everything it starts stops with it. "
        "Headless (--duration, or --no-console) it prints progress and, at the end, where "
        "the readings got to per site.",
        formatter_class=DefaultsShown,
    )
    demo.add_argument(
        "--boards",
        type=count,
        default=20,
        metavar="N",
        help="how many boards, spread over the sites and node kinds",
    )
    demo.add_argument(
        "--sites",
        type=count,
        default=3,
        metavar="N",
        help="how many of the programme's sites, each with a gateway of its own (at most 5)",
    )
    demo.add_argument(
        "--console",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the fleet console (default: when stdout is a terminal and no --duration);"
        " with --duration, the console closes after it",
    )
    demo.add_argument(
        "--duration",
        type=positive,
        metavar="SECONDS",
        help="run for this long, headless unless --console, and print a summary; without"
        " it, run until q in the console or Ctrl-C",
    )
    demo.add_argument(
        "--cycle",
        type=positive,
        default=2.0,
        metavar="SECONDS",
        help="sampling interval of every board",
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the broker, fleet, gateways and boards keep their state and logs; without"
        " it, a new temporary directory",
    )
    demo.set_defaults(handler=run_demo)


async def _until_stopped(duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if duration is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_emulate(args: argparse.Namespace) -> int:
    return asyncio.run(_emulate(args))


async def _emulate(args: argparse.Namespace) -> int:
    config: dict[str, Any] = cycle_config(args.cycle)
    if args.root_pub is not None:
        try:
            config["root_key"] = load_public_key(args.root_pub).hex()
        except (OSError, FleetError) as e:
            print(f"simpul emulate: --root-pub {args.root_pub}: {e}", file=sys.stderr, flush=True)
            return 2
    specs = plan_fleet(args.boards, args.seed, config)
    try:
        fleet = Fleet(
            specs,
            args.state_dir,
            args.gateway,
            engine=args.engine,
            serial=args.serial,
            rfc2217=args.rfc2217,
            blank=args.blank,
        )
        if args.engine == "mpy":
            vm_package.node()
            vm_package.vm_module()
    except vm_package.VmError as e:
        print(f"simpul emulate: {e}", file=sys.stderr, flush=True)
        return 1
    if args.oscore_keys is not None:
        try:
            keys = decode_keys_file(args.oscore_keys.read_bytes())
        except (OSError, BadBoardKeys) as e:
            print(f"simpul emulate: --oscore-keys {args.oscore_keys}: {e}", file=sys.stderr)
            return 2
        secured = fleet.provision_oscore({key.board_id: key.material for key in keys})
        print(f"simpul emulate: {len(secured)} boards provisioned for OSCORE", flush=True)
    if args.power_cut_at_write:
        for runner in fleet.runners:
            runner.faults.flash.cut_at_write = args.power_cut_at_write
            runner.faults.flash.cut_by = "kill"
    print(
        f"simpul emulate: {len(specs)} boards -> {_coap_url(args.gateway)}, "
        f"state {args.state_dir}, engine {args.engine}",
        flush=True,
    )
    for runner in fleet.runners:
        if runner.serial_path:
            print(f"{runner.spec.board_id} serial {runner.serial_path}", flush=True)
        if runner.rfc2217_url:
            print(f"{runner.spec.board_id} rfc2217 {runner.rfc2217_url}", flush=True)
    fleet.start()
    started = time.monotonic()
    reporter = asyncio.ensure_future(_report(fleet, args.cycle))
    try:
        await _until_stopped(args.duration)
    finally:
        reporter.cancel()
        await fleet.stop()
    elapsed = time.monotonic() - started
    print(
        f"simpul emulate: {fleet.sampled()} samples ({fleet.sampled_readings()} readings) in "
        f"{elapsed:.0f} s, {fleet.buffered()} samples ({fleet.buffered_readings()} readings) "
        "still buffered on boards",
        flush=True,
    )
    if not fleet.answered():
        print(_not_answering(fleet.gateway), flush=True)
    return 0


def _coap_url(gateway: tuple[str, int]) -> str:
    host, port = gateway
    return f"coap://[{host}]:{port}" if ":" in host else f"coap://{host}:{port}"


def _not_answering(gateway: tuple[str, int]) -> str:
    return (
        f"simpul emulate: the gateway at {_coap_url(gateway)} is not answering: no board has "
        "had an acknowledgement. Is `simpul gateway run` listening there (it prints its "
        "address), and is --gateway that address?"
    )


async def _report(fleet: Fleet, cycle: float) -> None:
    while True:
        await asyncio.sleep(max(5.0, cycle * 2))
        print(
            f"boards online {fleet.online(3 * cycle + 5)}/{len(fleet.runners)}  "
            f"samples {fleet.sampled()}  buffered {fleet.buffered()}",
            flush=True,
        )
        if not fleet.answered():
            print(_not_answering(fleet.gateway), flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from hw.demo import run

    state_dir = args.state_dir
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="simpul-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    console = args.console
    if console is None:
        console = sys.stdout.isatty() and args.duration is None
    return asyncio.run(
        run(
            args.boards,
            args.sites,
            args.cycle,
            args.duration,
            state_dir,
            sys.stdout,
            console=console,
        )
    )
