"""The gateway's configuration: a typed, documented, frozen model loaded from TOML.

Precedence, lowest first: field defaults, the ``[gateway]`` table of a TOML file (so one
``simpul.toml`` can hold every component's section), environment variables
``SIMPUL_GATEWAY__<FIELD>`` with ``__`` between nesting levels (``SIMPUL_GATEWAY__BIND__PORT``,
``SIMPUL_GATEWAY__UPLINKS__FILE__ENABLED``), then explicit overrides (the command line).

Example::

    [gateway]
    gateway_id = "gw-kec-sukajadi"
    site = "kec-sukajadi"
    state_dir = "/var/lib/simpul"

    [gateway.bind]
    host = "::"
    port = 5683

    [gateway.uplinks.file]
    enabled = true

    [gateway.batches]            # signed, hash-chained batches (when a batch uplink runs)
    max_readings = 1000
    max_age_ms = 1000

    [gateway.broker]             # the MQTT broker: batches up, the control channel
    address = "mqtt.example.go.id:8883"
    username = "gw-kec-sukajadi"
    password_file = "/etc/simpul/broker.password"
    tls_ca_file = "/etc/simpul/broker-ca.pem"

    [gateway.uplinks.mqtt]
    enabled = true

    [gateway.control]            # signed desired state and commands from the fleet
    enabled = true

    [gateway.uplinks.http]
    enabled = true
    url = "https://data.example.go.id/simpul/batches"

    [gateway.outbox]             # disk budget of the store
    max_bytes = 2_000_000_000
    policy = "refuse"            # or "drop_oldest"

    [gateway.security]           # OSCORE between boards and the gateway (gateway.oscore)
    plain_coap = false           # true: lab only, anyone may post under any name
    keys_file = "/etc/simpul/boards.keys.json"

    [gateway.ota]                # signed releases for the boards (gateway.ota)
    root_public_key = "/etc/simpul/root.pub"
    hw = "esp32"

    [gateway.pi]                 # GPIO on a Raspberry Pi (gateway.pi); absent: no GPIO
    status_led = 17
    button = 27

    [gateway.pi.boards.tkg-air-0001]   # the board's EN and IO0 wired to two GPIOs
    en = 23
    io0 = 24
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shlex
import socket
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from gateway.codec.senml import is_board_id
from gateway.errors import ConfigError

ENV_PREFIX = "SIMPUL_GATEWAY__"

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


def default_gateway_id() -> str:
    """``gw-<hostname>``, lower-cased, the host's short name only."""
    return "gw-" + socket.gethostname().split(".")[0].lower()


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/simpul`` when that variable is set, else ``./state``."""
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "simpul" if xdg else Path("state")


@dataclass(frozen=True)
class BindConfig:
    """Where the CoAP server listens (UDP)."""

    #: Address to bind; ``::`` is every IPv6 and (v4-mapped) IPv4 address.
    host: str = "::"
    #: UDP port; 5683 is CoAP's; 0 asks the OS for a free one (tests).
    port: int = 5683

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")


@dataclass(frozen=True)
class LimitsConfig:
    """What one request may carry, and what the gateway holds for all peers together.

    Larger requests are refused, never half-processed. The defaults hold on a Raspberry Pi
    under a flood: memory for deduplication and block-wise transfers is bounded whatever
    the traffic, and a peer sending faster than its share is dropped, not answered.
    """

    #: Largest request payload accepted, in bytes (after Block1 reassembly); above it: 4.13.
    max_request_bytes: int = 16384
    #: Most SenML records accepted in one request; above it: 4.00.
    max_records_per_request: int = 512
    #: Datagrams a second one source (address and port: a board's socket) may send,
    #: sustained; beyond it they are dropped unanswered (the board's CoAP retransmits). A
    #: board sends a few per cycle.
    peer_rate: float = 200.0
    #: Datagrams one source may send at once after a quiet spell.
    peer_burst: float = 400.0
    #: Datagrams a second one host may send from all its ports together (boards behind one
    #: NAT; a machine flooding from many ports).
    host_rate: float = 5_000.0
    #: Datagrams one host may send at once from all its ports.
    host_burst: float = 10_000.0
    #: Datagrams a second from every source together.
    total_rate: float = 20_000.0
    #: Datagrams at once from every source together.
    total_burst: float = 40_000.0
    #: Most (peer, message ID) pairs remembered to answer retransmissions (about 1 KB
    #: each); the oldest is forgotten first, and a repeat after that is stored once anyway.
    max_dedup_entries: int = 10_000
    #: Most Block1 transfers being assembled at once (each up to max_request_bytes); a new
    #: one evicts the oldest, whose sender then gets 4.08 and starts again.
    max_block1_transfers: int = 64
    #: Most requests of one source (address and port) waiting for the store at once; more
    #: get 5.03 with Max-Age.
    max_in_flight_per_peer: int = 64
    #: The largest forward jump of a board's record sequence numbers believed, in records
    #: (a board's flash buffer holds far fewer): a larger one is counted as an anomaly and
    #: neither moves the board's mark nor counts records as missed.
    max_seq_jump: int = 1_000_000
    #: Lab only: answer ``GET /gateway`` (the gateway's statistics) to anyone. Until the
    #: management API is authenticated it is refused (4.01) and not listed.
    open_gateway_stats: bool = False

    def __post_init__(self) -> None:
        if self.max_request_bytes < 1 or self.max_records_per_request < 1:
            raise ValueError("limits must be positive")
        rates = (self.peer_rate, self.peer_burst, self.host_rate, self.host_burst)
        if min(*rates, self.total_rate, self.total_burst) <= 0:
            raise ValueError("rates and bursts must be positive")
        if min(self.max_dedup_entries, self.max_block1_transfers, self.max_in_flight_per_peer) < 1:
            raise ValueError(
                "max_dedup_entries, max_block1_transfers and "
                "max_in_flight_per_peer must be at least 1"
            )


@dataclass(frozen=True)
class StoreConfig:
    """The SQLite store (``<state_dir>/gateway.db``)."""

    #: SQLite ``PRAGMA synchronous``. FULL fsyncs the WAL at every commit, so an
    #: acknowledged reading survives a power cut; NORMAL is faster but may lose the
    #: last commits on power loss (never on a process crash).
    synchronous: Synchronous = "FULL"


@dataclass(frozen=True)
class FileUplinkConfig:
    """The local file uplink: JSON Lines per UTC day (see ``gateway.uplinks.jsonl``)."""

    #: Whether the file uplink runs.
    enabled: bool = True
    #: Directory for the ``readings-YYYY-MM-DD.jsonl`` files; default ``<state_dir>/uplink``.
    directory: Path | None = None
    #: Most readings written per append (rows fetched from the outbox at once).
    batch_size: int = 1000
    #: Milliseconds to wait after new readings commit before appending, so that several
    #: commits go out in one append (less work per reading under load). 0: append at once.
    linger_ms: int = 100


@dataclass(frozen=True)
class BatchesConfig:
    """How the batcher groups outbox readings into signed batches (``gateway.uplinks.batcher``).

    It runs whenever a batch uplink (mqtt, http, batch_file) is enabled.
    """

    #: Most readings in one batch; a batch is cut as soon as this many are waiting.
    max_readings: int = 1000
    #: Milliseconds a received reading waits at most before a smaller batch is cut for it.
    max_age_ms: int = 1000

    def __post_init__(self) -> None:
        if self.max_readings < 1 or self.max_age_ms < 0:
            raise ValueError("max_readings must be at least 1 and max_age_ms not negative")


@dataclass(frozen=True)
class OutboxConfig:
    """The outbox's disk budget and what happens when it is reached (``gateway.store.budget``).

    The budget counts the bytes of the store in use (readings, batches, registry); what every
    enabled uplink has delivered is pruned, so only undelivered data fills it.
    """

    #: Disk budget of the store, in bytes; 0: no budget.
    max_bytes: int = 0
    #: ``refuse``: answer new readings with 5.03 and Max-Age (boards keep them) while over
    #: budget; ``drop_oldest``: delete the oldest undelivered batches (or readings) instead.
    policy: str = "refuse"
    #: Max-Age of a refusal, in seconds: when boards should try again.
    retry_after_s: int = 60
    #: Milliseconds between budget checks (and pruning rounds).
    check_interval_ms: int = 500
    #: Seconds a delivered reading stays in the store before it is pruned. The store
    #: recognises a board's retransmission (its acknowledgement lost, the gateway restarted
    #: meanwhile) only while it still holds the reading, so this is how late a repeat may
    #: come and still be stored once. Over the disk budget, delivered readings go first,
    #: whatever their age, before anything is refused or dropped.
    keep_delivered_s: int = 86_400

    def __post_init__(self) -> None:
        if self.policy not in ("refuse", "drop_oldest"):
            raise ValueError(f"policy must be refuse or drop_oldest, got {self.policy!r}")
        if self.max_bytes < 0 or self.retry_after_s < 0 or self.check_interval_ms < 1:
            raise ValueError("max_bytes, retry_after_s and check_interval_ms must be positive")
        if self.keep_delivered_s < 0:
            raise ValueError("keep_delivered_s must not be negative")


@dataclass(frozen=True)
class BrokerConfig:
    """The MQTT broker both the batch uplink and the control process use (``gateway.broker``).

    The password is read from a file (never from the TOML file or the environment, never
    logged). With ``tls_ca_file`` set the connection is TLS (paho's ``tls_set``), the broker's
    certificate checked against that CA; ``tls_cert_file`` and ``tls_key_file`` add a client
    certificate.
    """

    #: The broker, ``HOST:PORT``.
    address: str = "127.0.0.1:1883"
    #: MQTT user name; unset: connect without one.
    username: str | None = None
    #: File holding the MQTT password (its first line); needs ``username``.
    password_file: Path | None = None
    #: CA certificate(s), PEM, that the broker's certificate must chain to; set: use TLS.
    tls_ca_file: Path | None = None
    #: Client certificate, PEM, for brokers that authenticate clients by certificate.
    tls_cert_file: Path | None = None
    #: The client certificate's private key, PEM.
    tls_key_file: Path | None = None
    #: Start of every MQTT client id this gateway uses (``<prefix><gateway_id>-<role>``);
    #: client ids must be unique on the broker.
    client_id_prefix: str = "simpul-"

    def __post_init__(self) -> None:
        try:
            parse_bind(self.address)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if self.password_file is not None and self.username is None:
            raise ValueError("broker password_file needs a username")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("broker tls_cert_file and tls_key_file go together")
        if self.tls_cert_file is not None and self.tls_ca_file is None:
            raise ValueError("a broker client certificate needs tls_ca_file (TLS)")

    def password(self) -> str | None:
        """The password from ``password_file`` (first line), or None; :class:`ConfigError`
        naming the file (never its content) when it cannot be read."""
        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"gateway.broker.password_file: cannot read {self.password_file}: {exc}"
            ) from None
        return text.splitlines()[0] if text else ""


@dataclass(frozen=True)
class ControlConfig:
    """The control channel (``gateway.control``): the fleet's signed desired state and
    commands over the broker, the gateway's signed state and events back.

    It runs only when enabled and ``gateway.ota.root_public_key`` is set: the root key
    certifies the operator keys whose signatures it accepts.
    """

    #: Whether the control process runs.
    enabled: bool = False
    #: Seconds between two state messages (also sent right after a desired document is
    #: applied). A desired document's config may override it.
    state_interval_s: int = 30
    #: Seconds ahead a command's expiry may be at most; one expiring later is refused
    #: (``too_far``), so a captured command cannot be replayed for long.
    max_command_ttl_s: int = 86_400

    def __post_init__(self) -> None:
        if self.state_interval_s < 1 or self.max_command_ttl_s < 1:
            raise ValueError("state_interval_s and max_command_ttl_s must be at least 1")


@dataclass(frozen=True)
class MqttUplinkConfig:
    """The MQTT batch uplink (``gateway.uplinks.mqtt``): QoS 1 to the broker of
    ``gateway.broker``."""

    #: Whether it runs.
    enabled: bool = False
    #: Deprecated: the broker, ``HOST:PORT``; set ``gateway.broker.address`` instead. When
    #: set it still wins for this uplink (without the broker's credentials and TLS).
    broker: str | None = None
    #: Most batches published and not yet acknowledged (PUBACK) at once.
    window: int = 16
    #: MQTT keepalive, in seconds; the broker publishes the last will after 1.5 times this.
    keepalive_s: int = 30
    #: First retry delay after a failure, in milliseconds; doubles per failure (with jitter).
    backoff_base_ms: int = 500
    #: Longest retry delay, in milliseconds.
    backoff_max_ms: int = 30_000

    def __post_init__(self) -> None:
        _check_batch_uplink(self.window, self.backoff_base_ms, self.backoff_max_ms)


@dataclass(frozen=True)
class HttpUplinkConfig:
    """The HTTP(S) batch uplink (``gateway.uplinks.http``): one POST per batch, in order."""

    #: Whether it runs.
    enabled: bool = False
    #: Where batches are POSTed, ``http://`` or ``https://``.
    url: str = ""
    #: Milliseconds to wait for the server's answer before trying again.
    timeout_ms: int = 10_000
    #: First retry delay after a failure, in milliseconds; doubles per failure (with jitter).
    backoff_base_ms: int = 500
    #: Longest retry delay, in milliseconds.
    backoff_max_ms: int = 30_000

    def __post_init__(self) -> None:
        if self.enabled and not self.url:
            raise ValueError("the http uplink needs a url")
        _check_batch_uplink(1, self.backoff_base_ms, self.backoff_max_ms)


@dataclass(frozen=True)
class BatchFileUplinkConfig:
    """The batch file uplink (``gateway.uplinks.batch_file``): a CBOR sequence of batches.

    On by default, so that a gateway with no configuration already signs every reading into
    its hash chain (``simpul verify --file <state_dir>/batches/batches.cbor``).
    """

    #: Whether it runs.
    enabled: bool = True
    #: Directory of ``batches.cbor``; default ``<state_dir>/batches``.
    directory: Path | None = None
    #: Most batches appended per fsync.
    window: int = 64
    #: First retry delay after a failure (disk full...), in milliseconds; doubles per failure.
    backoff_base_ms: int = 500
    #: Longest retry delay, in milliseconds.
    backoff_max_ms: int = 30_000

    def __post_init__(self) -> None:
        _check_batch_uplink(self.window, self.backoff_base_ms, self.backoff_max_ms)


def _check_batch_uplink(window: int, base_ms: int, max_ms: int) -> None:
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if not 0 < base_ms <= max_ms:
        raise ValueError("backoff_base_ms must be positive and at most backoff_max_ms")


@dataclass(frozen=True)
class UplinksConfig:
    """Where readings go upstream; each uplink reads the outbox with its own cursor."""

    file: FileUplinkConfig = field(default_factory=FileUplinkConfig)
    mqtt: MqttUplinkConfig = field(default_factory=MqttUplinkConfig)
    http: HttpUplinkConfig = field(default_factory=HttpUplinkConfig)
    batch_file: BatchFileUplinkConfig = field(default_factory=BatchFileUplinkConfig)
    #: How much lower the uplink processes' CPU priority is (a ``nice`` increment, 0..19).
    #: Answering boards has a deadline (they retransmit after about 2 s) while readings
    #: wait durably in the outbox, so when the CPU is short the uplinks are the ones to wait.
    nice: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice must be 0..19, got {self.nice}")


@dataclass(frozen=True)
class OtaConfig:
    """Signed releases of the board application: the cache and its trust (``gateway.ota``)."""

    #: The fleet's root public key (PEM, DER, 32 raw bytes or 64 hex digits): a release is
    #: cached only if its chain verifies from this key. Unset: no release can be added.
    #: Read and checked when the gateway starts.
    root_public_key: Path | None = None
    #: The hardware class of this gateway's boards; releases for another class are refused.
    hw: str = "esp32"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", self.hw):
            raise ValueError(f"hw must be a hardware class name (a-z, 0-9, -), got {self.hw!r}")


#: BCM GPIO numbers on the Raspberry Pi's 40-pin header that simpul may use. GPIO 0 and 1
#: are the HAT ID EEPROM's bus, reserved by the Pi's firmware.
HEADER_GPIOS: Final = range(2, 28)


@dataclass(frozen=True)
class WiredBoardConfig:
    """One board's EN and IO0 lines wired to two of the Pi's GPIOs (``gateway.pi.boards.<id>``).

    Wired straight (a GPIO to EN, a GPIO to IO0, grounds joined), the GPIO holds the line
    high and pulls it low. Through an NPN transistor per line (the auto-reset circuit of a
    USB-serial bridge), the GPIO going high pulls the line low: set ``inverted``.
    """

    #: BCM GPIO number wired to the board's EN (reset) line.
    en: int
    #: BCM GPIO number wired to the board's IO0 (BOOT strap) line.
    io0: int
    #: True when a GPIO high pulls the line low (transistors between the Pi and the board).
    inverted: bool = False


@dataclass(frozen=True)
class PiConfig:
    """The gateway's GPIO on a Raspberry Pi (``gateway.pi``): a status LED, a button, and the
    EN and IO0 lines of wired boards (``gateway.pi``). Pins are BCM GPIO numbers (2..27); each
    may have one use, checked at start. Without a ``[gateway.pi]`` table no GPIO is touched.
    """

    #: Which gpiozero pin factory drives the pins: empty for gpiozero's own choice
    #: (``$GPIOZERO_PIN_FACTORY``, else lgpio on a Pi), ``mock`` for gpiozero's MockFactory
    #: (nothing is wired), ``emulated:HOST:PORT`` for pins wired to emulated boards
    #: (``hw.gpio_wires``).
    pin_factory: str = ""
    #: GPIO of the status LED (anode through a resistor, cathode to ground); unset: none.
    status_led: int | None = None
    #: True when the GPIO going high lights the LED.
    status_led_active_high: bool = True
    #: GPIO of the push button (to ground; the Pi's pull-up holds it high); unset: none.
    button: int | None = None
    #: Seconds the button must be held for a safe shutdown; a shorter press opens pairing.
    hold_s: float = 5.0
    #: Seconds a pairing window stays open after a short press.
    pairing_window_s: int = 120
    #: What a long press runs once the daemon has stopped (split like a shell would; no
    #: shell runs it).
    shutdown_command: str = "systemctl poweroff"
    #: Milliseconds EN is held low for a reset.
    reset_pulse_ms: int = 100
    #: Seconds an uplink may lag without delivering anything before the LED says it is down.
    uplink_down_after_s: int = 120
    #: Boards whose EN and IO0 are wired to the Pi, by board id.
    boards: dict[str, WiredBoardConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hold_s <= 0 or self.pairing_window_s < 1 or self.reset_pulse_ms < 1:
            raise ValueError("hold_s, pairing_window_s and reset_pulse_ms must be positive")
        if self.uplink_down_after_s < 1:
            raise ValueError("uplink_down_after_s must be positive")
        if not self.shutdown_command_argv():
            raise ValueError("shutdown_command must name a program")
        factory = self.pin_factory
        if factory not in ("", "mock") and not factory.startswith("emulated:"):
            raise ValueError(
                f"pin_factory must be empty, mock or emulated:HOST:PORT, got {factory!r}"
            )
        if factory.startswith("emulated:"):
            try:
                parse_bind(factory.removeprefix("emulated:"))
            except ConfigError as exc:
                raise ValueError(f"pin_factory {factory!r}: {exc}") from None
        uses: dict[int, str] = {}
        for use, pin in self.pin_uses():
            if pin not in HEADER_GPIOS:
                raise ValueError(
                    f"{use}: GPIO {pin} is not a usable GPIO of the Pi's header"
                    f" ({HEADER_GPIOS.start}..{HEADER_GPIOS.stop - 1})"
                )
            if pin in uses:
                raise ValueError(f"GPIO {pin} is used twice: by {uses[pin]} and by {use}")
            uses[pin] = use

    def pin_uses(self) -> list[tuple[str, int]]:
        """Every pin in use, named by its setting (``boards.<id>.en``)."""
        uses = [(name, pin) for name in ("status_led", "button")
                if (pin := getattr(self, name)) is not None]  # fmt: skip
        for board, wiring in sorted(self.boards.items()):
            if not is_board_id(board):
                raise ValueError(f"boards: {board!r} is not a board id")
            uses += [(f"boards.{board}.en", wiring.en), (f"boards.{board}.io0", wiring.io0)]
        return uses

    def shutdown_command_argv(self) -> list[str]:
        try:
            return shlex.split(self.shutdown_command)
        except ValueError as exc:
            raise ValueError(f"shutdown_command: {exc}") from None


@dataclass(frozen=True)
class SecurityConfig:
    """Who may talk to the gateway's CoAP server (``gateway.security``, ``gateway.oscore``).

    Boards speak OSCORE (RFC 8613) with per-board keys; the keys reach the gateway from a keys
    file (``simpul gateway boards import`` or ``keys_file``) or sealed in the control
    channel's desired document.
    """

    #: Lab only: also accept plain (unprotected) CoAP from anyone, under any board's name.
    #: The gateway's health and its log at start say so. Off: only ``/.well-known/core``
    #: answers plain CoAP; everything else needs an enrolled board's OSCORE keys (4.01).
    plain_coap: bool = False
    #: A keys file (``gateway.oscore.keys``) imported at every start, and again whenever it
    #: changes (a board whose material changed is re-keyed; one left out stays enrolled);
    #: unset: none.
    keys_file: Path | None = None
    #: Milliseconds between checks for boards enrolled or re-keyed meanwhile (by the
    #: control channel or a change of ``keys_file``).
    reload_interval_ms: int = 1000

    def __post_init__(self) -> None:
        if self.reload_interval_ms < 1:
            raise ValueError("reload_interval_ms must be at least 1")


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway daemon needs to run."""

    #: This gateway's identity in uplinked data; default ``gw-<hostname>``.
    gateway_id: str = field(default_factory=default_gateway_id)
    #: The site (kecamatan, pump house...) the gateway serves; copied into uplinked data.
    site: str = "unassigned"
    bind: BindConfig = field(default_factory=BindConfig)
    #: Directory for the database and uplink files; default ``./state`` or
    #: ``$XDG_STATE_HOME/simpul``.
    state_dir: Path = field(default_factory=default_state_dir)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    uplinks: UplinksConfig = field(default_factory=UplinksConfig)
    batches: BatchesConfig = field(default_factory=BatchesConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    ota: OtaConfig = field(default_factory=OtaConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    #: GPIO on a Raspberry Pi; None (no ``[gateway.pi]`` table): no GPIO at all.
    pi: PiConfig | None = None
    #: A board counts as online when it was heard within this many seconds.
    online_window_s: int = 900
    #: The TOML file this configuration was read from (set by :func:`load_config`; the
    #: control channel's ``reload`` command reads it again).
    config_file: Path | None = None

    def __post_init__(self) -> None:
        # Both name MQTT topics (simpul/<site>/<gateway>/...): no level separator, no
        # wildcard, and not empty.
        for name in ("gateway_id", "site"):
            value = getattr(self, name)
            if not value or len(value) > 64 or any(c in value for c in "/+#\0"):
                raise ValueError(
                    f"{name} must be 1 to 64 characters without '/', '+' or '#' (it names MQTT"
                    f" topics), got {value!r}"
                )

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.state_dir / "gateway.db"

    @property
    def file_uplink_dir(self) -> Path:
        """Where the file uplink writes."""
        return self.uplinks.file.directory or self.state_dir / "uplink"

    @property
    def batch_file_dir(self) -> Path:
        """Where the batch file uplink writes ``batches.cbor``."""
        return self.uplinks.batch_file.directory or self.state_dir / "batches"

    @property
    def releases_dir(self) -> Path:
        """Where cached releases' files are, one directory per release seq."""
        return self.state_dir / "releases"


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Build the config from defaults, a TOML file, the environment and overrides.

    ``overrides`` uses dotted keys (``{"bind.port": 0, "site": "x"}``); ``None`` values are
    skipped, so argparse results can be passed straight in. Raises :class:`ConfigError`.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fp:
                document = tomllib.load(fp)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        section = document.get("gateway", {})
        if not isinstance(section, dict):
            raise ConfigError(f"config file {path}: [gateway] must be a table")
        tree = section
    environ = os.environ if env is None else env
    for name, text in environ.items():
        if name.startswith(ENV_PREFIX):
            _set_dotted(tree, name[len(ENV_PREFIX) :].lower().split("__"), text, source=name)
    # The file and the environment are checked whole, even where an override replaces a
    # value: a wrong bind.port in the file must not hide behind a --bind for today's run.
    _build(GatewayConfig, copy.deepcopy(tree), "gateway")
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, key.split("."), value, source=f"override {key}")
    if path is not None:
        tree["config_file"] = path
    return _build(GatewayConfig, tree, "gateway")


def _set_dotted(tree: dict[str, Any], keys: list[str], value: object, *, source: str) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {key} is not a table")
        node = child
    node[keys[-1]] = value


T = TypeVar("T")


def _build(cls: type[T], table: Mapping[str, Any], where: str) -> T:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    kwargs = {
        name: _convert(hints[name], value, f"{where}.{name}") for name, value in table.items()
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value == ""):
            return None
        return _convert(options[0], value, where)
    if origin is dict:
        _, item = get_args(hint)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table")
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table")
        return _build(hint, value, where)  # type: ignore[arg-type]
    if origin is Literal:
        allowed = get_args(hint)
        text = str(value).upper()
        if text not in allowed:
            raise ConfigError(f"{where} must be one of {', '.join(allowed)}, got {value!r}")
        return text
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if hint is Path:
        if isinstance(value, str | Path):
            return Path(value).expanduser()
        raise ConfigError(f"{where} must be a path, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")


def parse_bind(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` or ``[V6HOST]:PORT`` as given on the command line."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"bind address must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
