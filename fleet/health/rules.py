"""The health rules: each a small pure function of one board or gateway, the thresholds and
``now_ms``, returning a :class:`Finding` or ``None``; :func:`evaluate` runs them all.

Board rules (subject: the board id):

- ``stale``: silent for more than ``stale_cycles`` of its upload cycles. Not reported while
  its gateway is itself stale: the ``gateway_stale`` finding counts those boards instead.
- ``reboot_loop``: within ``reboot_window_s``, ``boot_count`` grew by ``reboot_boots`` or
  more, or ``reboot_bad_causes`` or more boots had a reset cause in ``bad_reset_causes``
  (critical).
- ``battery_low``: the newest battery voltage is below ``battery_low_v`` (yet physically
  possible: 0 V is an open divider, which ``implausible`` reports).
- ``battery_drain``: over the last ``drain_window_s``, the battery fell faster than
  ``drain_min_v_per_h`` and than ``drain_factor`` times the board's baseline drain, the
  slope over its whole history when that is longer than the window (else 0).
- ``sensor_errors``: one sensor's fault counts grew by ``sensor_errors_min`` or more within
  ``sensor_errors_window_s``.
- ``heap_low``: the newest free heap is below ``heap_free_min_bytes``, or its low-water mark
  since boot below ``heap_min_floor_bytes``.
- ``buffer_growing``: ``buffered`` rose in each of the last ``buffer_rises`` reports and is
  at least ``buffer_min`` records: readings are not getting out.
- ``readings_dropped``: the ring buffer dropped ``dropped_min`` or more records within
  ``dropped_window_s`` (it was full: those readings are lost).
- ``implausible``: a latest reading outside its quantity's physical range
  (:data:`~fleet.health.quantities.QUANTITIES`), or, for ``baseline_quantities``, farther
  than ``implausible_k`` standard deviations from the board's own mean once its baseline
  holds ``implausible_min_count`` readings.

Gateway rules (subject: ``<site>/<gateway>``):

- ``gateway_stale``: its newest state is older than ``gateway_stale_intervals`` state
  intervals (critical).
- ``backlog_growing``: the backlog rose in each of the last ``backlog_rises`` states and is
  at least ``backlog_min`` readings.
- ``disk_full``: free disk below ``disk_free_min_fraction`` of the total.
- ``lab_mode`` (critical): the gateway takes plain CoAP (``security.plain_coap``), so anyone
  on its network may post readings under any board's name.
- ``uplink_down``: an uplink says it is down (critical when all are).

Counters counted "within a window" are those of the reports received in it; a counter that
falls (RAM counters restart at boot) counts its new value as growth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from fleet.health.model import BoardHealth, Finding, GatewayHealth, Severity
from fleet.health.quantities import QUANTITIES
from fleet.health.series import battery_series, growth, rises, since, slope_per_h
from fleet.health.thresholds import Thresholds

BoardRule = Callable[[BoardHealth, Thresholds, int], Finding | None]
GatewayRule = Callable[[GatewayHealth, Thresholds, int], Finding | None]


def _board(
    rule: str, board: BoardHealth, detail: dict[str, object], severity: Severity = "warning"
) -> Finding:
    return Finding(rule, board.board_id, "board", severity, detail)


def _gateway(
    rule: str, gateway: GatewayHealth, detail: dict[str, object], severity: Severity = "warning"
) -> Finding:
    return Finding(rule, gateway.subject, "gateway", severity, detail)


# --- boards ---------------------------------------------------------------------------


def stale(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    if board.last_seen_ms is None:
        return None  # enrolled, never heard: the inventory's matter, not an alert
    silent_ms = now_ms - board.last_seen_ms
    cycle_ms = board.cycle_s * 1000
    if silent_ms <= t.stale_cycles * cycle_ms:
        return None
    return _board(
        "stale",
        board,
        {
            "silent_s": silent_ms / 1000,
            "cycles": round(silent_ms / cycle_ms, 2),
            "cycle_s": board.cycle_s,
            "stale_cycles": t.stale_cycles,
            "last_seen_ms": board.last_seen_ms,
        },
    )


def reboot_loop(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    window = since(board.health, now_ms - t.reboot_window_s * 1000)
    if not window:
        return None
    boots = growth(s.boot_count for s in window)
    bad: dict[int, str] = {}
    for s in window:
        if s.boot_count is not None and s.reset_cause in t.bad_reset_causes:
            bad[s.boot_count] = s.reset_cause
    if boots < t.reboot_boots and len(bad) < t.reboot_bad_causes:
        return None
    causes: dict[str, int] = {}
    for cause in bad.values():
        causes[cause] = causes.get(cause, 0) + 1
    return _board(
        "reboot_loop",
        board,
        {
            "boots": boots,
            "bad_boots": len(bad),
            "bad_causes": causes,
            "window_s": t.reboot_window_s,
            "boot_count": window[-1].boot_count,
        },
        "critical",
    )


def _battery(board: BoardHealth) -> float | None:
    for s in reversed(board.health):
        if s.battery is not None:
            return s.battery
    return board.latest.get("battery")


def battery_low(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    volts = _battery(board)
    if volts is None or not QUANTITIES["battery"].low <= volts < t.battery_low_v:
        return None
    return _board("battery_low", board, {"battery_v": volts, "battery_low_v": t.battery_low_v})


def battery_drain(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    start_ms = now_ms - t.drain_window_s * 1000
    times, volts = battery_series(since(board.health, start_ms))
    if len(times) < t.drain_min_samples:
        return None
    slope = slope_per_h(times, volts)
    if slope is None or -slope <= t.drain_min_v_per_h:
        return None
    drain = -slope
    baseline = 0.0
    history: list[int] = []
    if board.health[0].at_ms < start_ms:
        history, history_volts = battery_series(board.health)
        long_slope = slope_per_h(history, history_volts)
        baseline = max(0.0, -long_slope) if long_slope is not None else 0.0
    if drain <= t.drain_factor * baseline:
        return None
    return _board(
        "battery_drain",
        board,
        {
            "drain_v_per_h": round(drain, 4),
            "baseline_v_per_h": round(baseline, 4),
            "window_s": t.drain_window_s,
            "samples": len(times),
            "baseline_samples": len(history),
            "drain_factor": t.drain_factor,
            "drain_min_v_per_h": t.drain_min_v_per_h,
        },
    )


def sensor_errors(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    window = since(board.health, now_ms - t.sensor_errors_window_s * 1000)
    faults: set[tuple[str, str]] = set()
    for s in window:
        for sensor, counts in s.sensor_errors.items():
            faults.update((sensor, fault) for fault in counts)
    if not faults:
        return None
    grown: dict[str, dict[str, int]] = {}
    for sensor, fault in sorted(faults):
        n = growth(s.sensor_errors.get(sensor, {}).get(fault, 0) for s in window)
        if n:
            grown.setdefault(sensor, {})[fault] = n
    worst = max((sum(f.values()) for f in grown.values()), default=0)
    if worst < t.sensor_errors_min:
        return None
    return _board(
        "sensor_errors",
        board,
        {
            "errors": grown,
            "window_s": t.sensor_errors_window_s,
            "sensor_errors_min": t.sensor_errors_min,
        },
    )


def heap_low(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    for s in reversed(board.health):
        if s.heap_free is not None or s.heap_min is not None:
            break
    else:
        return None
    free_low = s.heap_free is not None and s.heap_free < t.heap_free_min_bytes
    min_low = s.heap_min is not None and s.heap_min < t.heap_min_floor_bytes
    if not (free_low or min_low):
        return None
    return _board(
        "heap_low",
        board,
        {
            "heap_free": s.heap_free,
            "heap_min": s.heap_min,
            "heap_free_min_bytes": t.heap_free_min_bytes,
            "heap_min_floor_bytes": t.heap_min_floor_bytes,
        },
    )


def buffer_growing(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    values = [s.buffered for s in board.health[-(t.buffer_rises + 1) :]]
    if len(values) <= t.buffer_rises or values[-1] is None or values[-1] < t.buffer_min:
        return None
    if rises(values) < t.buffer_rises:
        return None
    return _board("buffer_growing", board, {"buffered": values, "buffer_min": t.buffer_min})


def readings_dropped(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    window = since(board.health, now_ms - t.dropped_window_s * 1000)
    dropped = growth(s.dropped for s in window)
    if dropped < t.dropped_min:
        return None
    return _board("readings_dropped", board, {"dropped": dropped, "window_s": t.dropped_window_s})


def implausible(board: BoardHealth, t: Thresholds, now_ms: int) -> Finding | None:
    found: dict[str, dict[str, object]] = {}
    for name, x in board.latest.items():
        q = QUANTITIES.get(name)
        if q is None:
            continue
        if not q.low <= x <= q.high:
            found[name] = {"value": x, "unit": q.unit, "low": q.low, "high": q.high}
            continue
        if name not in t.baseline_quantities:
            continue
        b = board.baselines.get(name)
        if b is None or b.count < t.implausible_min_count:
            continue
        std = max(b.std, q.resolution)
        if abs(x - b.mean) > t.implausible_k * std:
            found[name] = {
                "value": x,
                "unit": q.unit,
                "mean": round(b.mean, 6),
                "std": round(std, 6),
                "sigmas": round(abs(x - b.mean) / std, 2),
                "count": b.count,
            }
    if not found:
        return None
    return _board("implausible", board, {"readings": found, "implausible_k": t.implausible_k})


BOARD_RULES: Final[tuple[BoardRule, ...]] = (
    stale,
    reboot_loop,
    battery_low,
    battery_drain,
    sensor_errors,
    heap_low,
    buffer_growing,
    readings_dropped,
    implausible,
)


# --- gateways -------------------------------------------------------------------------


def gateway_stale(gateway: GatewayHealth, t: Thresholds, now_ms: int) -> Finding | None:
    if gateway.last_state_ms is None:
        return None
    silent_ms = now_ms - gateway.last_state_ms
    if silent_ms <= t.gateway_stale_intervals * gateway.state_interval_s * 1000:
        return None
    return _gateway(
        "gateway_stale",
        gateway,
        {
            "silent_s": silent_ms / 1000,
            "state_interval_s": gateway.state_interval_s,
            "gateway_stale_intervals": t.gateway_stale_intervals,
            "last_state_ms": gateway.last_state_ms,
        },
        "critical",
    )


def backlog_growing(gateway: GatewayHealth, t: Thresholds, now_ms: int) -> Finding | None:
    values: list[int | None] = [b.backlog for b in gateway.backlog[-(t.backlog_rises + 1) :]]
    if len(values) <= t.backlog_rises or (values[-1] or 0) < t.backlog_min:
        return None
    if rises(values) < t.backlog_rises:
        return None
    return _gateway("backlog_growing", gateway, {"backlog": values, "backlog_min": t.backlog_min})


def disk_full(gateway: GatewayHealth, t: Thresholds, now_ms: int) -> Finding | None:
    free, total = gateway.disk_free, gateway.disk_total
    if free is None or not total:
        return None
    if free >= t.disk_free_min_fraction * total:
        return None
    return _gateway(
        "disk_full",
        gateway,
        {
            "disk_free": free,
            "disk_total": total,
            "free_fraction": round(free / total, 4),
            "disk_free_min_fraction": t.disk_free_min_fraction,
        },
    )


def lab_mode(gateway: GatewayHealth, t: Thresholds, now_ms: int) -> Finding | None:
    if not gateway.plain_coap:
        return None
    refused = {k: v for k, v in sorted(gateway.refused.items()) if v}
    return _gateway("lab_mode", gateway, {"plain_coap": True, "refused": refused}, "critical")


def uplink_down(gateway: GatewayHealth, t: Thresholds, now_ms: int) -> Finding | None:
    down = {
        name: {"delivered": u.delivered, "lag": u.lag}
        for name, u in sorted(gateway.uplinks.items())
        if not u.up
    }
    if not down:
        return None
    severity: Severity = "critical" if len(down) == len(gateway.uplinks) else "warning"
    return _gateway(
        "uplink_down", gateway, {"down": down, "uplinks": len(gateway.uplinks)}, severity
    )


GATEWAY_RULES: Final[tuple[GatewayRule, ...]] = (
    gateway_stale,
    backlog_growing,
    disk_full,
    uplink_down,
    lab_mode,
)


def evaluate(
    boards: Iterable[BoardHealth],
    gateways: Iterable[GatewayHealth],
    thresholds: Thresholds,
    now_ms: int,
) -> list[Finding]:
    """Every rule over every board and gateway: board findings first, one per (rule, subject)."""
    findings: list[Finding] = []
    stale_gateways: dict[str, int] = {}
    gateway_findings: list[Finding] = []
    for gateway in gateways:
        for gateway_rule in GATEWAY_RULES:
            found = gateway_rule(gateway, thresholds, now_ms)
            if found is not None:
                gateway_findings.append(found)
                if found.rule == "gateway_stale":
                    stale_gateways[gateway.subject] = 0
    board_rules = BOARD_RULES
    for board in boards:
        for rule in board_rules:
            found = rule(board, thresholds, now_ms)
            if found is None:
                continue
            if found.rule == "stale" and stale_gateways:
                gateway_subject = f"{board.site}/{board.gateway}"
                if gateway_subject in stale_gateways:
                    stale_gateways[gateway_subject] += 1
                    continue
            findings.append(found)
    for found in gateway_findings:
        if found.rule == "gateway_stale":
            found = Finding(
                found.rule,
                found.subject,
                found.subject_kind,
                found.severity,
                {**found.detail, "stale_boards": stale_gateways[found.subject]},
            )
        findings.append(found)
    return findings
