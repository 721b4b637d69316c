"""``simpul verify``: check signed batches as a consumer would, from a file, stdin or MQTT.

    simpul verify --key gw-1.pub --file batches.cbor            # readings as JSON Lines
    simpul verify --key gw-1.pub --report < batches.cbor        # a summary per gateway
    simpul verify --key gw-1.pub --mqtt 127.0.0.1:1883 --topic 'simpul/+/+/batches' \\
        --count 100 --timeout 60

Files and stdin hold a CBOR sequence (RFC 8742) of batches; over MQTT each message is one
batch (subscribed with QoS 1). Each problem is printed on stderr as it is found, by name
(``gap: gateway gw-1 batches 17..19 missing``). Exit code: 0 when everything verified
(repeats are no failure), 1 when any problem is a failure, 2 when the command cannot run
(bad key file, no broker).

Over MQTT, once subscribed it prints ``simpul verify: subscribed to TOPIC on HOST:PORT`` on
stderr, and stops after ``--count`` batches or ``--timeout`` seconds; too few batches by
then is a failure (``incomplete``).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from gateway.batches.verify import ChainVerifier, KeySet, Outcome, Problem, verify_sequence
from gateway.codec.senml import value_to_json
from gateway.config import parse_bind
from gateway.errors import GatewayError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class SourceError(GatewayError, OSError):
    """The batches' source cannot be read: no such file, no broker, a refused subscription."""

    reason = "source"


def add_commands(subparsers: Any) -> None:
    """Add ``verify`` to the root ``simpul`` parser's subparsers."""
    parser = subparsers.add_parser(
        "verify",
        help="verify signed batches from a gateway (consumers)",
        description="Check each batch's signature and each gateway's chain; print readings.",
    )
    parser.add_argument(
        "--key",
        dest="keys",
        action="append",
        type=Path,
        required=True,
        metavar="FILE",
        help="PEM public key of a gateway (simpul gateway key --public); repeatable",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--file", type=Path, help="a CBOR sequence of batches (default: stdin)")
    source.add_argument("--mqtt", metavar="HOST:PORT", help="subscribe to batches on a broker")
    parser.add_argument("--topic", help="MQTT topic filter, e.g. simpul/+/+/batches")
    parser.add_argument("--count", type=int, help="MQTT: stop after this many batches")
    parser.add_argument(
        "--timeout", type=float, help="MQTT: stop after this many seconds (default: never)"
    )
    parser.add_argument(
        "--join",
        action="store_true",
        help="accept a chain starting after batch 1 (a subscriber that joined late)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--readings", action="store_true", help="print readings (default)")
    output.add_argument("--report", action="store_true", help="print a summary instead")
    parser.set_defaults(handler=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul verify``; returns the exit code."""
    if args.mqtt is None and (args.topic or args.count is not None or args.timeout is not None):
        return _usage("--topic, --count and --timeout go with --mqtt")
    if args.mqtt is not None and not args.topic:
        return _usage("--mqtt needs --topic")
    try:
        keys = KeySet.from_files(args.keys)
        verifier = ChainVerifier(keys, join=args.join)
        if args.mqtt is not None:
            host, port = parse_bind(args.mqtt)
            outcomes = _mqtt_outcomes(verifier, host, port, args.topic, args.count, args.timeout)
        elif args.file is not None:
            outcomes = _file_outcomes(verifier, args.file)
        else:
            outcomes = verify_sequence(sys.stdin.buffer, verifier)
        _run(verifier, outcomes, report=args.report, out=sys.stdout)
    except GatewayError as exc:
        return _usage(str(exc))
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and say nothing was proven.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return EXIT_FAILED if verifier.failed else EXIT_OK


def _usage(message: str) -> int:
    print(f"simpul verify: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _file_outcomes(verifier: ChainVerifier, path: Path) -> Iterator[Outcome]:
    try:
        fp: BinaryIO = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    with fp:
        yield from verify_sequence(fp, verifier)


def _run(
    verifier: ChainVerifier, outcomes: Iterator[Outcome], *, report: bool, out: TextIO
) -> None:
    seen = False
    for outcome in outcomes:
        seen = True
        for problem in outcome.problems:
            _say(problem)
        if not report:
            for r in outcome.readings:
                line = {
                    "gateway": r.gateway,
                    "site": r.site,
                    "seq": r.seq,
                    "board": r.board_id,
                    "name": r.name,
                    "unit": r.unit,
                    "kind": r.kind,
                    "value": value_to_json(r.kind, r.value),
                    "time_ms": r.time_ms,
                }
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
    if not seen and not verifier.problems:
        # An empty input proves nothing: a consumer must not read it as "all verified".
        _say(verifier.report(Problem("empty", "no batches in the input: nothing was verified")))
    if report:
        _write_report(verifier, out)
    out.flush()


def _say(problem: Problem) -> None:
    note = "" if problem.is_failure else " (not a failure)"
    print(f"simpul verify: {problem}{note}", file=sys.stderr, flush=True)


def _write_report(verifier: ChainVerifier, out: TextIO) -> None:
    for chain in sorted(verifier.chains.values(), key=lambda c: c.gateway):
        seqs = sorted(chain.digests)
        span = f"{seqs[0]}..{seqs[-1]}" if seqs else "-"
        still = f", {len(chain.missing)} still missing" if chain.missing else ""
        out.write(
            f"gateway {chain.gateway} site {chain.site}: {chain.batches} batches ({span}),"
            f" {chain.readings} readings, {chain.repeats} repeats{still}\n"
        )
    failures = [p for p in verifier.problems if p.is_failure]
    for problem in failures:
        out.write(f"{problem}\n")
    if failures:
        out.write(f"FAILED: {len(failures)} problem(s)\n")
    else:
        out.write("OK: every batch verified, every chain complete\n")


def _mqtt_outcomes(
    verifier: ChainVerifier,
    host: str,
    port: int,
    topic: str,
    count: int | None,
    timeout: float | None,
) -> Iterator[Outcome]:
    """Subscribe with QoS 1 and feed each message's payload to ``verifier`` as one batch."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    inbox: queue.Queue[bytes | SourceError] = queue.Queue()
    subscribed = queue.Queue[bool]()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            inbox.put(SourceError(f"broker {host}:{port} refused the connection: {reason}"))
        else:
            client.subscribe(topic, qos=1)

    def on_subscribe(client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            inbox.put(SourceError(f"broker refused subscription to {topic}: {refused[0]}"))
        else:
            subscribed.put(True)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        inbox.put(bytes(message.payload))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"simpul-verify-{os.getpid()}")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        raise SourceError(f"cannot connect to MQTT broker {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        received = 0
        announced = False
        while count is None or received < count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if not announced and not subscribed.empty():
                announced = True
                print(
                    f"simpul verify: subscribed to {topic} on {host}:{port}",
                    file=sys.stderr,
                    flush=True,
                )
            try:
                item = inbox.get(timeout=0.05 if not announced else remaining)
            except queue.Empty:
                continue
            if isinstance(item, SourceError):
                raise item
            received += 1
            yield verifier.feed(item)
        if count is not None and received < count:
            outcome = Outcome(None)
            outcome.problems.append(
                verifier.report(
                    Problem(
                        "incomplete",
                        f"received {received} of {count} batches within {timeout} s",
                    )
                )
            )
            yield outcome
    finally:
        client.disconnect()
        client.loop_stop()
