"""What the headless demo prints: a progress line every few seconds, and at the end a table per
site and one summary line. Pure: the figures are gathered by the city and passed in.

Every figure counts readings (one per quantity measured): sampled by the boards, stored by
the site's gateway, delivered upstream in verified batches, and recorded in fleet.db by the
fleet manager. The samples still buffered on boards (one per board per cycle, several
readings each) are named as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# What the table shows of each site's latest upstream values, in this order:
# (reading name, label, unit).
_SHOWN = (
    ("pm2_5", "PM2.5", "µg/m³"),
    ("temperature", "", "°C"),
    ("level", "river", "m"),
    ("fill", "bins", "%"),
)


@dataclass(frozen=True, slots=True)
class SiteFigures:
    """One site of the demo at one moment."""

    site_id: str
    gateway_id: str
    boards: int
    #: Boards whose gateway acknowledged something lately.
    online: int
    sampled: int
    #: Readings still in the boards' flash, and the samples they are in.
    buffered: int
    buffered_samples: int
    stored: int
    delivered: int
    recorded: int
    latest: dict[str, float] = field(default_factory=dict)


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _total(figures: Sequence[SiteFigures], name: str) -> int:
    return sum(int(getattr(f, name)) for f in figures)


def progress_line(elapsed: float, figures: Sequence[SiteFigures]) -> str:
    """``  10 s  boards online 6/6  stored 120  delivered upstream 96  in fleet.db 96``."""
    return (
        f"{elapsed:4.0f} s  boards online {_total(figures, 'online')}/"
        f"{_total(figures, 'boards')}  stored {_total(figures, 'stored')}  delivered upstream "
        f"{_total(figures, 'delivered')}  in fleet.db {_total(figures, 'recorded')}"
    )


def latest_text(latest: dict[str, float]) -> str:
    """A site's latest upstream values that people read first (PM2.5, temperature, …)."""
    return " · ".join(
        f"{label + ' ' if label else ''}{latest[name]:g} {unit}"
        for name, label, unit in _SHOWN
        if name in latest
    )


def site_table(figures: Sequence[SiteFigures]) -> str:
    """One row per site: its gateway, boards, and where its readings got to."""
    headers = ("site", "gateway", "boards", "sampled", "stored", "upstream", "fleet.db", "latest")
    rows = [
        (
            f.site_id,
            f.gateway_id,
            str(f.boards),
            str(f.sampled),
            str(f.stored),
            str(f.delivered),
            str(f.recorded),
            latest_text(f.latest),
        )
        for f in figures
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def summary(elapsed: float, figures: Sequence[SiteFigures]) -> str:
    """The demo's last line."""
    buffered = _total(figures, "buffered")
    samples = _total(figures, "buffered_samples")
    return (
        f"simpul demo: {_total(figures, 'boards')} boards at {_count(len(figures), 'site')} for "
        f"{elapsed:.0f} s: {_total(figures, 'sampled')} readings sampled, "
        f"{_total(figures, 'stored')} stored by the gateways, {_total(figures, 'delivered')} "
        f"delivered upstream, {_total(figures, 'recorded')} recorded in fleet.db, "
        f"{_count(buffered, 'reading')} still buffered on boards "
        f"(in {_count(samples, 'sample')}; they go when the boards run again)"
    )
