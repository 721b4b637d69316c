"""The fleet's health checks: rules over boards and gateways, alerts with hysteresis, and the
verdict that halts a rollout. Pure: no SQL, no MQTT, no clock (``now_ms`` is passed in).

- :mod:`~fleet.health.model`: the inputs (:class:`BoardHealth`, :class:`GatewayHealth`,
  :class:`HealthSample`, :class:`Baseline`) and :class:`Finding`;
- :mod:`~fleet.health.quantities`: each SenML quantity's unit and physical range;
- :mod:`~fleet.health.thresholds`: :class:`Thresholds`, what an operator can tune;
- :mod:`~fleet.health.rules`: the rules and :func:`evaluate`;
- :mod:`~fleet.health.alerts`: :func:`step`, raising and clearing alerts with hysteresis;
- :mod:`~fleet.health.rollout`: :func:`worse_after`, a board before and after an update.
"""

from fleet.health.alerts import AlertCounter, AlertKey, Transition, step
from fleet.health.model import (
    BacklogSample,
    Baseline,
    BoardHealth,
    Finding,
    GatewayHealth,
    HealthSample,
    UplinkState,
)
from fleet.health.quantities import QUANTITIES, Quantity
from fleet.health.rollout import Observations, Reason, WorseLimits, worse_after
from fleet.health.rules import BOARD_RULES, GATEWAY_RULES, evaluate
from fleet.health.thresholds import Thresholds

__all__ = [
    "BOARD_RULES",
    "GATEWAY_RULES",
    "QUANTITIES",
    "AlertCounter",
    "AlertKey",
    "BacklogSample",
    "Baseline",
    "BoardHealth",
    "Finding",
    "GatewayHealth",
    "HealthSample",
    "Observations",
    "Quantity",
    "Reason",
    "Thresholds",
    "Transition",
    "UplinkState",
    "WorseLimits",
    "evaluate",
    "step",
    "worse_after",
]
