"""``simpul gateway …``: the Raspberry Pi daemon's command line.

``simpul gateway run`` starts the daemon and, once it listens, prints exactly one line::

    simpul gateway <gateway_id> listening on coap://HOST:PORT state <state_dir>

Under systemd (``simpul gateway install``) it says READY=1 once it listens, keeps the
watchdog fed while it is healthy, and logs with journal priorities
(:mod:`gateway.service`).

``simpul gateway key --public`` prints the batch signing key's public half (PEM) for
consumers' key sets; ``--kid`` its key id; ``--rotate`` begins a key rotation.

It stops gracefully on SIGTERM or SIGINT (exit code 0), and on a long press of the
Raspberry Pi's button (``[gateway.pi]``), after which it runs ``gateway.pi.shutdown_command``
once. Configuration errors, a port in use or an unusable state directory exit with code 2
and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.batches.keys import add_key_arguments
from gateway.config import GatewayConfig, load_config, parse_bind
from gateway.errors import GatewayError
from gateway.oscore.cli import add_commands as add_board_key_commands
from gateway.ota.cli import add_commands as add_release_commands
from gateway.service import journal
from gateway.service.install import add_commands as add_service_commands

if TYPE_CHECKING:
    from gateway.daemon import Gateway
    from gateway.service.notify import Notifier

EXIT_OK = 0
EXIT_USAGE = 2


def add_commands(subparsers: Any) -> None:
    """Add the ``gateway`` group to the root ``simpul`` parser's subparsers."""
    group = subparsers.add_parser("gateway", help="the gateway daemon (Raspberry Pi)")
    commands = group.add_subparsers(dest="gateway_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run the gateway daemon in the foreground",
        description="Serve boards over CoAP, store readings durably, feed the uplinks.",
    )
    run.add_argument("--config", type=Path, help="TOML file with a [gateway] table")
    run.add_argument("--state-dir", type=Path, help="directory for the database and uplink files")
    run.add_argument("--bind", metavar="HOST:PORT", help="UDP address to listen on (port 0: any)")
    run.add_argument("--gateway-id", metavar="ID", help="this gateway's id in uplinked data")
    run.add_argument("--site", metavar="NAME", help="the site this gateway serves")
    run.add_argument(
        "--pin-factory",
        metavar="NAME",
        help="drive [gateway.pi]'s pins with this factory: mock, emulated:HOST:PORT"
        " (default: gateway.pi.pin_factory, else gpiozero's choice)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    run.set_defaults(handler=run_command)
    key = commands.add_parser(
        "key",
        help="the gateway's batch signing key: print it, its id, or rotate it",
        description="Print the public key consumers verify batches with (creating the key on"
        " first use), its key id, or begin a rotation announced by the next batch.",
    )
    add_key_arguments(key)
    add_release_commands(commands)
    add_board_key_commands(commands)
    add_service_commands(commands)


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """The config file and environment, with the command line's options on top."""
    overrides: dict[str, Any] = {
        "state_dir": args.state_dir,
        "gateway_id": args.gateway_id,
        "site": args.site,
    }
    if args.bind is not None:
        overrides["bind.host"], overrides["bind.port"] = parse_bind(args.bind)
    if getattr(args, "pin_factory", None) is not None:
        overrides["pi.pin_factory"] = args.pin_factory
    return load_config(args.config, overrides=overrides)


def run_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul gateway run``; returns the exit code."""
    # In the journal, which has priorities to filter on, INFO too; in a terminal, warnings.
    quiet = logging.INFO if journal.is_journal_stream(sys.stderr) else logging.WARNING
    journal.configure(logging.DEBUG if args.verbose else quiet, stream=sys.stderr)
    try:
        config = config_from_args(args)
        return asyncio.run(serve(config))
    except GatewayError as exc:
        print(f"{journal.error_prefix()}simpul gateway: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def serve(config: GatewayConfig, *, pin_factory: Any = None) -> int:
    """Run a gateway until SIGTERM or SIGINT, or a long press of the button, then stop it
    gracefully (and after a long press run the shutdown command). ``pin_factory``: the
    pins' factory instead of the one the config names (tests pass a MockFactory)."""
    # Imported here: the rest of the ``simpul`` command (``verify`` above all) needs no
    # CoAP stack, and a consumer's machine may not have one.
    from gateway.daemon import Gateway, tune_gc
    from gateway.service.notify import Notifier

    gateway = Gateway(config, pin_factory=pin_factory)
    await gateway.start()
    tune_gc()
    notifier = Notifier.from_environ()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host, port = gateway.bound_address
    shown = f"[{host}]" if ":" in host else host
    print(
        f"simpul gateway {config.gateway_id} listening on coap://{shown}:{port}"
        f" state {config.state_dir}",
        flush=True,
    )
    logging.getLogger(__name__).info("listening on coap://%s:%d", shown, port)
    supervision = _supervise(gateway, notifier)
    stopped = asyncio.ensure_future(stop.wait())
    shutdown = asyncio.ensure_future(gateway.shutdown.wait())
    try:
        await asyncio.wait({stopped, shutdown}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        shutdown.cancel()
        notifier.stopping()
        if supervision is not None:
            supervision.cancel()
        await gateway.stop()
        notifier.close()
    if gateway.shutdown.is_set() and config.pi is not None:
        from gateway.pi.panel import run_shutdown_command

        # Everything in hand is committed and answered: now the machine may go down.
        await asyncio.to_thread(run_shutdown_command, config.pi)
    return EXIT_OK


def _supervise(gateway: Gateway, notifier: Notifier) -> asyncio.Task[None] | None:
    """READY=1, then the watchdog and STATUS (gateway.service.notify); None without systemd."""
    from gateway.service.notify import status_line, supervise, watchdog_interval_s

    if not notifier.enabled:
        return None
    notifier.ready(status_line(gateway.stats()))
    return asyncio.create_task(
        supervise(
            notifier,
            gateway.alive,
            lambda: status_line(gateway.stats()),
            interval_s=watchdog_interval_s(),
        ),
        name="sd-notify",
    )
