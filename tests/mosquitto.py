"""A real Mosquitto broker for tests, on a free loopback port, gone at the end.

    with running_mosquitto(tmp_path) as broker:
        client.connect(broker.host, broker.port)

or the ``mosquitto`` fixture (``tests/batches/conftest.py`` shows how to expose it).
:meth:`Broker.stop` and :meth:`Broker.start` stop and restart it on the same port, for
outage tests. It is the demo's broker (``hw.broker``); a missing binary fails the test with
the package to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hw.broker import Mosquitto, MosquittoMissing, find_mosquitto, free_tcp_port


def mosquitto_path() -> str:
    """The broker binary, or a test failure naming the package to install."""
    try:
        return find_mosquitto()
    except MosquittoMissing as exc:
        pytest.fail(str(exc), pytrace=False)


class Broker(Mosquitto):
    """:class:`hw.broker.Mosquitto`, failing the test (not erroring) when it is missing."""

    def binary(self) -> str:
        return mosquitto_path()


@contextmanager
def running_mosquitto(directory: Path, port: int | None = None) -> Iterator[Broker]:
    broker = Broker(directory, port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


__all__ = ["Broker", "free_tcp_port", "mosquitto_path", "running_mosquitto"]
