"""The Board screen: one board's identity, release and liveness; its readings and health over
the last day as sparklines; what its readings mean for the city (ISPU for air, the flood
alert level for water, the fill of a bin); its rollouts and its alerts. Keys act on it:
reboot, fetch its log, tag, retire.

The detail is read in a thread worker of the screen whenever the app hands it a snapshot,
and posted back as a message; the UI thread only draws it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Final

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Label, Sparkline, Static
from textual.worker import get_current_worker

from fleet.console.backend import BoardDetail, FleetSnapshot, HealthSeries, ReadingSeries
from fleet.console.health import liveness, seen_text
from fleet.console.screens.base import FleetView
from fleet.console.screens.log import LogScreen
from fleet.console.screens.tag import TagScreen, parse_tag_edit
from fleet.console.view import ViewContext
from fleet.inventory import when
from fleet.levels import FLOOD_LEVELS, Colour, fill_status, flood_level, ispu_of

#: How far back the sparklines reach (ms); ISPU is the mean over the same day, as the
#: regulation's 24-hour average.
HISTORY_MS: Final = 24 * 3_600_000
_FLOOD_LABEL: Final = {level.key: level.label for level in FLOOD_LEVELS}


@dataclass
class DetailReady(Message):
    detail: BoardDetail


@dataclass
class DetailFailed(Message):
    error: str


@dataclass
class LogFetched(Message):
    board_id: str
    text: str


# --- what the screen says (pure) -------------------------------------------------------------


def badge_style(colour: Colour) -> str:
    """A bold label on ``colour``, its text black or white, whichever reads."""
    red, green, blue = (int(colour.hex[i : i + 2], 16) for i in (1, 3, 5))
    light = 0.299 * red + 0.587 * green + 0.114 * blue > 140
    return f"bold {'black' if light else 'white'} on {colour.hex}"


def number(value: float, unit: str) -> str:
    """A reading for people: three significant figures at most, no float noise."""
    text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def numbers_text(values: Sequence[float], unit: str) -> str:
    if not values:
        return "no data"
    return (
        f"min {number(min(values), unit)}  max {number(max(values), unit)}"
        f"  last {number(values[-1], unit)}"
    )


def header_text(detail: BoardDetail, now_ms: int, stale_after_ms: int) -> Text:
    board = detail.board
    state = liveness(board.last_seen_ms, now_ms, stale_after_ms)
    text = Text.assemble(
        (board.board_id, "bold"),
        f"  {board.kind}  site {board.site_id}  gateway {board.gateway_id}",
        f"  tags {', '.join(board.tags) or 'none'}\n",
        f"release running {board.running or 'factory'}, desired {detail.desired or 'none set'}",
        f"  ·  OTA {board.ota_state or 'idle'}",
        f" ({detail.ota_detail})" if detail.ota_detail else "",
        "  ·  ",
        (state.value, state.style),
        f", last seen {seen_text(board.last_seen_ms, now_ms)}",
    )
    if detail.retired_ms is not None:
        text.append("  ·  RETIRED", style="bold red")
    return text


def _series(detail: BoardDetail, quantity: str) -> ReadingSeries | None:
    return next((s for s in detail.readings if s.quantity == quantity), None)


def _latest(detail: BoardDetail, quantity: str) -> float | None:
    return next((r.value for r in detail.latest if r.quantity == quantity), None)


def air_text(detail: BoardDetail) -> Text:
    """The ISPU of the day's mean PM2.5 and PM10, its category in its colour, and the means
    it came from."""
    means = {}
    for pollutant in ("pm2_5", "pm10"):
        series = _series(detail, pollutant)
        mean = None if series is None else series.mean
        if mean is not None:
            means[pollutant] = mean
    try:
        found = ispu_of(means)
    except ValueError as exc:
        return Text(f"ISPU: cannot be computed: {exc}", style="red")
    if found is None:
        return Text("ISPU: no PM2.5 or PM10 readings in the last 24 h")
    category = found.category
    badge = f" {found.index}{'+' if found.capped else ''} {category.name_id} "
    text = Text.assemble(
        "ISPU ",
        (badge, badge_style(category.colour)),
        f" ({category.name_en})  from the 24 h means:",
    )
    for pollutant, mean in means.items():
        name = "PM2.5" if pollutant == "pm2_5" else "PM10"
        mark = " ◀" if pollutant == found.pollutant else ""
        text.append(f"  {name} {number(mean, 'ug/m3')}{mark}")
    return text


def water_text(detail: BoardDetail) -> Text:
    """The latest water level against the site's Siaga IV..I thresholds."""
    level = _latest(detail, "level")
    if level is None:
        return Text("Flood level: no water level reading yet")
    thresholds = dict(detail.flood_levels)
    if not thresholds:
        return Text(
            f"Water level {number(level, 'm')} · site {detail.board.site_id} has no flood alert"
            " levels (simpul fleet sites add --flood)"
        )
    try:
        status = flood_level(level, thresholds)
    except ValueError as exc:
        return Text(f"Flood level: cannot be judged: {exc}", style="red")
    text = Text.assemble(
        "Flood ", (f" {status.reached.label} ", badge_style(status.colour)),
        f"  water level {number(level, 'm')}",
    )  # fmt: skip
    if status.next_level is not None and status.margin_m is not None:
        text.append(f" · {number(status.margin_m, 'm')} below {status.next_level.label}")
    ordered = sorted(thresholds.items(), key=lambda kv: kv[1])
    text.append("  ·  levels " + ", ".join(f"{_FLOOD_LABEL.get(k, k)} {v:g} m" for k, v in ordered))
    return text


def bin_text(detail: BoardDetail) -> Text:
    fill = _latest(detail, "fill")
    if fill is None:
        return Text("Fill: no reading yet")
    try:
        status = fill_status(fill)
    except ValueError as exc:
        return Text(f"Fill: cannot be judged: {exc}", style="red")
    return Text.assemble(
        "Fill ", (f" {status.band.label} ", badge_style(status.colour)), f"  {fill:.0f} %"
    )


def status_text(detail: BoardDetail) -> Text:
    """What the board's readings mean, by its kind (nothing for other kinds)."""
    kind = detail.board.kind
    if kind == "air":
        return air_text(detail)
    if kind == "water":
        return water_text(detail)
    if kind == "bin":
        return bin_text(detail)
    return Text(f"{kind} board: readings below")


def rollouts_text(detail: BoardDetail) -> Text:
    if not detail.rollouts:
        return Text("Rollouts: none yet")
    text = Text("Rollouts, latest first")
    for step in detail.rollouts:
        text.append(
            f"\n  {step.rollout_id}  release {step.release}  wave {step.wave}  {step.status}"
            f"  (rollout {step.rollout_state}, {when(step.updated_ms)})"
        )
    return text


def alerts_text(detail: BoardDetail, now_ms: int) -> Text:
    if not detail.alerts:
        return Text("Alerts: none")
    text = Text("Alerts, newest first")
    for alert in detail.alerts:
        text.append("\n  ")
        text.append(f"{alert.state:7}", style="bold red" if alert.state == "open" else "")
        text.append(
            f"  #{alert.alert_id} {alert.rule}  raised {seen_text(alert.raised_ms, now_ms)}"
        )
        if alert.cleared_ms is not None:
            text.append(f", cleared {seen_text(alert.cleared_ms, now_ms)}")
        if alert.acked_by:
            text.append(f", acknowledged by {alert.acked_by}: {alert.note or ''}".rstrip(": "))
    return text


# --- the widgets -------------------------------------------------------------------------


def spark_data(values: Sequence[float]) -> list[float]:
    """What the sparkline draws: one value is drawn as two, so a single bucket shows as the
    flat line that equal values show (Sparkline fills the whole row for one value)."""
    return [values[0], values[0]] if len(values) == 1 else list(values)


class SeriesRow(Horizontal):
    """A name, a sparkline of values, and their min, max and last."""

    def __init__(self, name: str, unit: str, values: Sequence[float], *, id: str) -> None:
        super().__init__(id=id, classes="series")
        self.unit = unit
        self.sparkline = Sparkline(spark_data(values), summary_function=max)
        self.numbers = Static(numbers_text(values, unit), classes="series-numbers")
        self.label = Label(name, classes="series-name")

    def compose(self) -> ComposeResult:
        yield self.label
        yield self.sparkline
        yield self.numbers

    def show(self, values: Sequence[float]) -> None:
        data = spark_data(values)
        if self.sparkline.data != data:
            self.sparkline.data = data
            self.numbers.update(numbers_text(values, self.unit))


def _rows(
    readings: Sequence[ReadingSeries], health: Sequence[HealthSeries]
) -> dict[str, tuple[str, str, tuple[float, ...]]]:
    """Each row's widget id: its name, unit and values (reading means, health values)."""
    rows = {f"reading-{s.quantity}": (s.quantity, s.unit, s.means) for s in readings}
    for h in health:
        rows[f"health-{h.name}"] = (h.name, h.unit, h.values)
    return rows


class BoardActions(Provider):
    """The command palette's entries for the board in view."""

    def _entries(self) -> list[tuple[str, Callable[[], None], str]]:
        screen = self.screen
        if not isinstance(screen, BoardScreen):
            return []
        board = screen.board_id
        return [
            (f"Reboot {board}", screen.action_reboot, "restart it at its next contact (asks)"),
            (f"Fetch log of {board}", screen.action_fetch_log, "what its gateway has of it"),
            (f"Tag {board}", screen.action_tag, "add or remove tags: +tag -tag"),
            (f"Retire {board}", screen.action_retire, "take it out of the fleet (asks)"),
        ]

    async def discover(self) -> Hits:
        for text, run, help_text in self._entries():
            yield DiscoveryHit(text, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, run, help_text in self._entries():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), run, help=help_text)


class BoardScreen(FleetView):
    """One board, ``board_id``; ``escape`` goes back to where it was opened from."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reboot", "Reboot"),
        Binding("l", "fetch_log", "Log"),
        Binding("t", "tag", "Tag"),
        Binding("x", "retire", "Retire"),
        Binding("escape", "back", "Back"),
    ]
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = {BoardActions}

    def __init__(self, context: ViewContext, board_id: str) -> None:
        super().__init__(context)
        self.board_id = board_id
        #: The detail drawn last (``None``: not read yet).
        self.detail: BoardDetail | None = None
        self.header_line = Static(f"{board_id}: reading…", id="board-header")
        self.status_line = Static("", id="board-status")
        self.readings_box = Vertical(id="board-readings")
        self.health_box = Vertical(id="board-health")
        self.rollouts_line = Static("", id="board-rollouts")
        self.alerts_line = Static("", id="board-alerts")

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.header_line
        with VerticalScroll(id="board-body"):
            yield self.status_line
            yield Static("Readings, last 24 h (15-minute means)", classes="board-section")
            yield self.readings_box
            yield Static("Health, last 24 h", classes="board-section")
            yield self.health_box
            yield self.rollouts_line
            yield self.alerts_line
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        if self.shown is None:
            self.load()

    def draw(self, snapshot: FleetSnapshot) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="board-detail", exit_on_error=False)
    def load(self) -> None:
        """Read the board's detail (the backend may block) and post it to the screen."""
        since = self.context.now_ms() - HISTORY_MS
        try:
            detail = self.context.backend.board_detail(self.board_id, since)
        # Any failure is shown on the screen; the next snapshot reads again.
        except Exception as exc:
            message: Message = DetailFailed(str(exc) or type(exc).__name__)
        else:
            message = DetailReady(detail)
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_detail_ready(self, message: DetailReady) -> None:
        detail = message.detail
        if detail == self.detail:
            return
        self.detail = detail
        now = self.context.now_ms()
        self.header_line.update(header_text(detail, now, self.context.stale_after_ms))
        self.status_line.update(status_text(detail))
        self._show_rows(self.readings_box, _rows(detail.readings, ()))
        self._show_rows(self.health_box, _rows((), detail.health))
        self.rollouts_line.update(rollouts_text(detail))
        self.alerts_line.update(alerts_text(detail, now))

    def _show_rows(
        self, box: Vertical, rows: dict[str, tuple[str, str, tuple[float, ...]]]
    ) -> None:
        present = {child.id: child for child in box.children if isinstance(child, SeriesRow)}
        if list(present) != list(rows):
            box.remove_children()
            box.mount_all(
                SeriesRow(name, unit, values, id=key) for key, (name, unit, values) in rows.items()
            )
            return
        for key, (_name, _unit, values) in rows.items():
            present[key].show(values)

    def on_detail_failed(self, message: DetailFailed) -> None:
        self.header_line.update(Text(f"{self.board_id}: {message.error}", style="red"))

    def sparkline(self, key: str) -> Sparkline:
        """The sparkline of a row: ``reading-<quantity>`` or ``health-<field>``."""
        return self.query_one(f"#{key}", SeriesRow).sparkline

    # --- actions ---------------------------------------------------------------------------

    @property
    def gateway_id(self) -> str:
        return "its gateway" if self.detail is None else f"gateway {self.detail.board.gateway_id}"

    def action_reboot(self) -> None:
        board = self.board_id
        self.context.act(
            f"Reboot {board}",
            partial(self.context.backend.reboot_board, board),
            confirm=(
                f"Reboot {board}?",
                f"Board {board} restarts at its next contact with {self.gateway_id}."
                " Its buffered readings are kept.",
            ),
        )

    def action_fetch_log(self) -> None:
        self.context.act(f"Log of {self.board_id}", self._fetch_log)

    def _fetch_log(self) -> str:
        """In the action's worker: the log is shown in a dialog, the result says its size."""
        text = self.context.backend.fetch_log(self.board_id)
        self.post_message(LogFetched(self.board_id, text))
        return f"{len(text.splitlines())} lines from {self.gateway_id}"

    def on_log_fetched(self, message: LogFetched) -> None:
        self.app.push_screen(LogScreen(f"Log of {message.board_id}", message.text))

    def action_tag(self) -> None:
        tags = () if self.detail is None else self.detail.board.tags
        self.app.push_screen(TagScreen(self.board_id, tags), callback=self._tagged)

    def _tagged(self, typed: str | None) -> None:
        if typed is None:
            return
        try:
            add, remove = parse_tag_edit(typed)
        except ValueError as exc:
            self.notify(str(exc), title=f"Tag {self.board_id}: refused", severity="error")
            return
        self.context.act(
            f"Tag {self.board_id}",
            partial(self.context.backend.tag_board, self.board_id, add, remove),
        )

    def action_retire(self) -> None:
        board = self.board_id
        self.context.act(
            f"Retire {board}",
            partial(self.context.backend.retire_board, board),
            confirm=(
                f"Retire {board}?",
                f"Board {board} leaves the listings and the desired documents of"
                f" {self.gateway_id}, and rollouts pass it by; its record and history stay"
                " in fleet.db. The console cannot undo this.",
            ),
        )

    def action_back(self) -> None:
        self.dismiss()
