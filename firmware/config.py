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
    return cfg


def load(flash, path=PATH):
    try:
        f = flash.open(path, "r")
    except OSError:
        raise ConfigError("no config file at " + path) from None
    try:
        return parse(f.read())
    finally:
        f.close()
