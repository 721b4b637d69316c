"""Every command that talks to the broker takes the same options, and they reach the
connection settings: ``simpul fleet serve``, ``simpul fleet`` (the console) and
``simpul fleet command``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fleet.cli import build_parser
from fleet.link import BrokerSettings, broker_from_arguments

LOGIN = ["--broker", "mq.example:8883", "--username", "fleet", "--password-file", "/etc/pw",
         "--tls-ca", "/etc/ca.pem"]  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [["fleet", "serve"], ["fleet"], ["fleet", "console"], ["fleet", "command", "gw-1", "ping"]],
)
def test_each_broker_command_logs_in_with_the_same_options(command: list[str]) -> None:
    args = build_parser().parse_args([*command, *LOGIN])
    settings = broker_from_arguments(args)
    assert settings == BrokerSettings(
        "mq.example", 8883, "fleet", Path("/etc/pw"), Path("/etc/ca.pem")
    )


def test_no_broker_is_none_and_a_bad_address_is_refused() -> None:
    none = argparse.Namespace(broker=None, username=None, password_file=None, tls_ca=None)
    assert broker_from_arguments(none) is None
    bad = argparse.Namespace(broker="mq.example", username=None, password_file=None, tls_ca=None)
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        broker_from_arguments(bad)
