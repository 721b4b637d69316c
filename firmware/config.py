"""The board's config file (``/config.json``), written by the technician at provisioning.

Fields and their units (defaults in ``DEFAULTS``):

- ``board_id`` (required): the board's name in the fleet, e.g. ``"tkg-air-0001"``.
- ``kind``: ``"air"`` (BME280 + PMS5003), ``"water"`` (JSN-SR04T + BME280) or ``"bin"``
  (JSN-SR04T); every kind also measures its battery.
- ``gateway_host``, ``gateway_port``: where readings go (CoAP over UDP).
- ``interval_s``: seconds between samples. ``upload_every``: samples between uploads.
- ``health_every``: samples between health reports.
- ``batch_bytes``: most payload bytes of readings in one CoAP request.
- ``buffer_segment_bytes``, ``buffer_segments``: the flash ring buffer's size.
- ``coap_ack_timeout_ms``, ``coap_max_retransmit``: RFC 7252 ACK_TIMEOUT and MAX_RETRANSMIT.
- ``retry_max_s``: the longest wait between upload attempts while the gateway is away.
- ``watchdog_ms``: the hardware watchdog's timeout.
- ``mount_mm`` (water): height of the sonar above the river bed.
- ``bin_depth_mm`` (bin): distance from the sonar to the bin's floor.
- ``pins``: pin overrides for boards wired differently from the carrier board.
- ``root_key``: the fleet's root public key (64 hex digits), the only key that can vouch for
  a release; without it the board installs no update.
- ``hw``: the hardware class a release must name. ``slot_bytes``: an application slot's size.
- ``ota_selftest_s``: how long a release's trial boot has to pass its self-test (a sample
  read, readings and health accepted by the gateway) before the board returns to the old one.
- ``ota_retry_s``: how long a refused release is left alone before it is fetched again.
- ``ota_window``: ``[from_hour, to_hour]`` (UTC) when an installed release may reboot the
  board into its trial; ``null``: right away.
"""

import json

from errors import ConfigError

PATH = "/config.json"

DEFAULTS = {
    "kind": "air",
    "gateway_port": 5683,
    "interval_s": 60,
    "upload_every": 1,
    "health_every": 10,
    "batch_bytes": 900,
    "buffer_segment_bytes": 4096,
    "buffer_segments": 16,
    "coap_ack_timeout_ms": 2000,
    "coap_max_retransmit": 4,
    "retry_max_s": 60,
    "watchdog_ms": 120000,
    "mount_mm": 4000,
    "bin_depth_mm": 1100,
    "root_key": None,
    "hw": "esp32",
    "slot_bytes": 393216,
    "ota_selftest_s": 300,
    "ota_retry_s": 3600,
    "ota_window": None,
}

KINDS = ("air", "water", "bin")

_POSITIVE = (
    "interval_s",
    "upload_every",
    "health_every",
    "batch_bytes",
    "buffer_segment_bytes",
    "buffer_segments",
    "coap_ack_timeout_ms",
    "retry_max_s",
    "watchdog_ms",
    "mount_mm",
    "bin_depth_mm",
    "slot_bytes",
    "ota_selftest_s",
    "ota_retry_s",
)


def parse(text):
    """Validate a config file's text; return the config with defaults filled in."""
    try:
        given = json.loads(text)
    except ValueError:
        raise ConfigError("config is not JSON") from None
    if not isinstance(given, dict):
        raise ConfigError("config must be a JSON object")
    cfg = dict(DEFAULTS)
    cfg.update(given)
    for key in ("board_id", "gateway_host"):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise ConfigError("config needs " + key)
    if cfg["kind"] not in KINDS:
        raise ConfigError("kind must be one of air, water, bin")
    for key in _POSITIVE:
        value = cfg[key]
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(key + " must be a positive number")
    if not isinstance(cfg["coap_max_retransmit"], int) or cfg["coap_max_retransmit"] < 0:
        raise ConfigError("coap_max_retransmit must be a whole number >= 0")
    if cfg["root_key"] is not None and not _hex_key(cfg["root_key"]):
        raise ConfigError("root_key must be 64 hex digits")
    window = cfg["ota_window"]
    if window is not None and not (
        isinstance(window, list)
        and len(window) == 2
        and all(isinstance(h, int) and 0 <= h <= 24 for h in window)
    ):
        raise ConfigError("ota_window must be [from_hour, to_hour], hours 0..24 UTC")
    return cfg


def _hex_key(value):
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdefABCDEF" for c in value)
    )


def load(flash, path=PATH):
    try:
        f = flash.open(path, "r")
    except OSError:
        raise ConfigError("no config file at " + path) from None
    try:
        return parse(f.read())
    finally:
        f.close()
