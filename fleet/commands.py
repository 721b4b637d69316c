"""``simpul fleet command GATEWAY ACTION``: a signed command to one gateway, and its reply.

Commands: ``reboot --board B`` (the board restarts at its next contact; the reply comes once
its health shows it booted again), ``log --board B`` (what the gateway has of the board),
``reload`` (the gateway reads its config file again), ``ping``, and for a board whose EN
and IO0 lines are wired to the gateway's GPIO (``[gateway.pi]``) ``power_cycle --board B``
(EN pulled low 0.1 s: the board restarts as at power-on, however hung) and ``bootloader
--board B`` (IO0 held low across an EN pulse: the ROM serial bootloader, for esptool).
Each is signed with the operator key, carries a fresh 16-byte nonce and an expiry
(``--ttl``), is published on the gateway's ``commands`` topic and audited; the reply, signed
by the gateway, is verified with the key fleet.db holds for it. A gateway runs a command at
most once, and not after it expired; a command sent while the gateway is away waits in the
broker's session for it.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet import keys as fleet_keys
from fleet.errors import FleetError
from fleet.inventory import operator_name
from fleet.keys import FLEET_DIR_ENV, default_fleet_dir
from fleet.link import BrokerSettings, LinkError, add_broker_arguments, broker_from_arguments
from fleet.serve import BROKER_ENV
from fleet.store import DB_NAME, FleetStore
from gateway.codec import cose
from gateway.control import messages, topics
from gateway.control.messages import ACTIONS, BOARD_ACTIONS, Command, ControlRefused

DEFAULT_TTL_S: Final = 3600
DEFAULT_WAIT_S: Final = 30.0


def send(
    fleet_dir: Path,
    store: FleetStore,
    settings: BrokerSettings,
    gateway_id: str,
    action: str,
    *,
    board: str | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    wait_s: float = DEFAULT_WAIT_S,
    operator: str,
) -> dict[str, Any] | None:
    """Sign and publish a command; its verified reply, or None if none came in ``wait_s``."""
    gateway = store.gateway(gateway_id)
    if gateway is None:
        raise FleetError(f"unknown gateway {gateway_id!r} (simpul fleet gateways lists them)")
    if action in BOARD_ACTIONS and board is None:
        raise FleetError(f"{action} needs --board")
    now = int(time.time())
    command = Command(
        site=gateway.site_id,
        gateway=gateway_id,
        id=os.urandom(messages.NONCE_BYTES),
        issued=now,
        expires=now + ttl_s,
        action=action,
        board=board,
    )
    signer = fleet_keys.load_operator(fleet_dir)
    sealed = messages.envelope(signer.key, signer.certificate, signer.revocations, command)
    detail = {"action": action, "board": board, "id": command.id.hex(), "expires": command.expires}
    try:
        reply = _exchange(settings, gateway.site_id, gateway_id, gateway.public_key, command,
                          sealed, wait_s)  # fmt: skip
    except (LinkError, OSError) as exc:
        store.append_audit(operator, f"command.{action}", gateway_id, detail, f"error: {exc}")
        raise
    result = "no reply" if reply is None else ("ok" if reply.get("ok") else "failed")
    store.append_audit(operator, f"command.{action}", gateway_id, detail, result)
    return reply


def _exchange(
    settings: BrokerSettings,
    site: str,
    gateway_id: str,
    public_key: bytes,
    command: Command,
    sealed: bytes,
    wait_s: float,
) -> dict[str, Any] | None:
    replies: queue.Queue[bytes] = queue.Queue(1000)
    subscribed: queue.Queue[bool] = queue.Queue(1)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{settings.client_id}-command-{os.getpid()}",
        protocol=mqtt.MQTTv311,
    )
    if settings.username is not None:
        password = settings.password_file.read_text().strip() if settings.password_file else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca_file is not None:
        client.tls_set(ca_certs=str(settings.tls_ca_file))
    client.on_subscribe = lambda c, u, mid, codes, p: subscribed.put_nowait(True)
    client.on_message = lambda c, u, m: replies.put_nowait(bytes(m.payload))
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except OSError as exc:
        raise LinkError(f"cannot reach the broker {settings.host}:{settings.port}: {exc}") from None
    client.loop_start()
    try:
        client.subscribe(topics.gateway_topic(site, gateway_id, topics.REPLIES), qos=1)
        try:
            subscribed.get(timeout=10)
        except queue.Empty:
            raise LinkError("the broker did not confirm the subscription") from None
        info = client.publish(
            topics.gateway_topic(site, gateway_id, topics.COMMANDS), sealed, qos=1
        )
        info.wait_for_publish(10)
        deadline = time.monotonic() + wait_s
        keys = {cose.key_id(public_key): public_key}
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = replies.get(timeout=left)
            except queue.Empty:
                return None
            try:
                payload = messages.verify_up(data, keys, site=site, gateway=gateway_id)
            except ControlRefused:
                continue  # not the gateway's: nothing it says counts
            if payload.get("type") == "reply" and payload.get("id") == command.id:
                return payload
        return None
    finally:
        client.loop_stop()
        client.disconnect()


def add_commands(fleet_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = fleet_commands.add_parser(
        "command",
        help="send a signed command to a gateway (reboot, log, reload, ping, power_cycle,"
        " bootloader) and print its reply",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("gateway", metavar="GATEWAY", help="the gateway's id")
    parser.add_argument("action", choices=ACTIONS, help="what it is to do")
    parser.add_argument("--board", help="the board a reboot, log, power_cycle or bootloader is for")
    parser.add_argument(
        "--ttl", type=int, default=DEFAULT_TTL_S, metavar="SECONDS",
        help="the command expires after this (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
        help="how long to wait for the reply (default: %(default)s; 0: do not wait)",
    )  # fmt: skip
    add_broker_arguments(
        parser,
        default=os.environ.get(BROKER_ENV, "127.0.0.1:1883"),
        help=f"the MQTT broker (default: ${BROKER_ENV}, else 127.0.0.1:1883)",
    )
    parser.add_argument("--fleet-dir", type=Path, default=None,
                        help=f"the fleet directory (default: ${FLEET_DIR_ENV})")  # fmt: skip
    parser.add_argument("--operator", help="who is acting (default: $SIMPUL_OPERATOR)")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    fleet_dir = args.fleet_dir or default_fleet_dir()
    try:
        settings = broker_from_arguments(args)
        assert settings is not None  # --broker has a default
        with FleetStore(fleet_dir / DB_NAME, create=False) as store:
            reply = send(
                fleet_dir,
                store,
                settings,
                args.gateway,
                args.action,
                board=args.board,
                ttl_s=args.ttl,
                wait_s=args.wait,
                operator=operator_name(args.operator),
            )
    except (FleetError, ValueError, OSError) as exc:
        print(f"simpul fleet command: error: {exc}", file=sys.stderr)
        return 1
    if reply is None:
        print(f"simpul fleet command: no reply from {args.gateway} within {args.wait:g} s"
              " (the command stays valid until it expires)", file=sys.stderr)  # fmt: skip
        return 3
    shown = {**reply, "id": reply["id"].hex()}
    if args.json:
        print(json.dumps(shown, indent=2, default=str))
    elif reply.get("ok"):
        print(f"{args.gateway}: {args.action} done: {json.dumps(reply.get('result'), default=str)}")
    else:
        print(f"{args.gateway}: {args.action} failed: {reply.get('error')}")
    return 0 if reply.get("ok") else 1


__all__ = ["send"]
