"""The control channel's MQTT topics, all under ``simpul/<site>/<gateway>/``.

=================  =========  ========  ==========================================
topic              direction  retained  payload (``gateway.control.messages``)
=================  =========  ========  ==========================================
``state``          up         yes       the gateway's state, signed by its key
``events``         up         no        events (board seen, reboots, OTA, refusals)
``replies``        up         no        a command's reply, signed by the gateway
``desired``        down       yes       a desired-state document, operator-signed
``commands``       down       no        a command, operator-signed
=================  =========  ========  ==========================================

Releases travel as retained messages on ``simpul/releases/<seq>``: a release file is
self-verifying (its manifest chains to the root key), so no operator signature wraps it.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "simpul"


def gateway_topic(site: str, gateway: str, leaf: str) -> str:
    """``simpul/<site>/<gateway>/<leaf>``."""
    return f"{PREFIX}/{site}/{gateway}/{leaf}"


def release_topic(seq: int) -> str:
    return f"{PREFIX}/releases/{seq}"


def parse_gateway_topic(topic: str) -> tuple[str, str, str] | None:
    """(site, gateway, leaf) of a gateway topic, or None if it is not one."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] == "releases":
        return None
    return parts[1], parts[2], parts[3]


STATE: Final = "state"
EVENTS: Final = "events"
REPLIES: Final = "replies"
DESIRED: Final = "desired"
COMMANDS: Final = "commands"
