"""The form that asks what a new rollout is: release, target, canaries, waves, soak and the
failure threshold. It checks what it can (numbers, percentages, a target named) and says what
is wrong beside the fields; what only the fleet knows (the release held, the boards matched)
the fleet checks when the rollout starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from fleet.console.backend import FleetSnapshot
from fleet.operations import RolloutRequest
from fleet.rollouts import BoardRef, Target, WaveSpec, limits_from
from gateway.control.messages import Limits

#: How a target is written: ``all``, or a word and comma-separated values.
TARGET_WORDS: Final = ("site", "kind", "tag", "boards")


@dataclass(frozen=True, slots=True)
class StartForm:
    """What the operator typed, as typed."""

    release: str
    target: str
    canary: str = "1"
    waves: str = "100"
    soak: str = "600"
    failures: str = "0"


def parse_target(text: str, sites: tuple[str, ...]) -> Target:
    """``all`` (every site), ``site s-0,s-1``, ``kind air``, ``tag pilot`` or ``boards b1,b2``."""
    word, _, rest = text.strip().partition(" ")
    values = tuple(v.strip() for v in rest.split(",") if v.strip())
    if word == "all" and not values:
        if not sites:
            raise ValueError("target: the fleet has no sites yet")
        return Target(sites=sites)
    if word not in TARGET_WORDS or not values:
        raise ValueError(
            "target: write all, or site/kind/tag/boards and names, e.g. 'site takengon'"
            " or 'boards b1,b2'"
        )
    index = TARGET_WORDS.index(word)
    fields: list[tuple[str, ...]] = [(), (), (), ()]
    fields[index] = values
    return Target(*fields)


def _whole(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{name}: a whole number, not {text!r}") from None


def parse_start_form(form: StartForm, sites: tuple[str, ...]) -> RolloutRequest:
    """The request the form describes; ``ValueError`` naming the field that is wrong."""
    release = _whole("release", form.release)
    if release <= 0:
        raise ValueError("release: the seq of a release the fleet holds, 1 or more")
    target = parse_target(form.target, sites)
    try:
        percents = tuple(int(p) for p in form.waves.split(","))
        soaks = tuple(int(s) for s in form.soak.split(","))
    except ValueError:
        raise ValueError(
            "waves and soak: whole numbers separated by commas, e.g. 25,100 and 3600,600"
        ) from None
    try:
        waves = WaveSpec(
            canary=_whole("canary", form.canary),
            percents=percents,
            soak_s=soaks[0] if len(soaks) == 1 else soaks,
        )
    except ValueError as exc:
        raise ValueError(f"waves: {exc}") from None
    try:
        percent = float(form.failures.strip())
    except ValueError:
        raise ValueError(f"failures: a percentage, 0 to 100, not {form.failures!r}") from None
    if not 0 <= percent <= 100:
        raise ValueError("failures: a percentage, 0 to 100")
    default = Limits()
    limits = limits_from(percent / 100, default.confirm_s, default.silent_s, default.reboots)
    return RolloutRequest(release=release, target=target, waves=waves, limits=limits)


def start_consequence(request: RolloutRequest, snapshot: FleetSnapshot | None) -> str:
    """What starting ``request`` does, for the confirm dialog: how many enrolled boards the
    target matches that do not run the release yet (as the console last read them), the
    waves, soak and threshold."""
    matched = None
    if snapshot is not None:
        refs = (
            BoardRef(b.board_id, b.site_id, b.gateway_id, b.kind, frozenset(b.tags), b.running)
            for b in snapshot.boards
        )
        matched = sum(1 for b in refs if request.target.matches(b) and b.running != request.release)
    boards = "the target boards" if matched is None else f"{matched} boards"
    spec = request.waves
    soak = spec.soak_s if isinstance(spec.soak_s, int) else ", ".join(map(str, spec.soak_s))
    percents = ", ".join(f"{p}%" for p in spec.percents)
    return (
        f"Release {request.release} goes to {boards} (those not running it yet): first"
        f" {spec.canary} canary boards, then waves up to {percents}"
        f" of the rest, each soaking {soak} s. It halts when more than"
        f" {request.limits.failures:.0%} of a wave's boards fail."
    )


def releases_text(releases: tuple[tuple[int, str], ...]) -> str:
    """The releases the fleet holds, for the form's first line."""
    if not releases:
        return "The fleet holds no release yet: add one with 'simpul fleet releases add FILE'."
    held = ", ".join(f"{seq} ({version})" for seq, version in releases[:6])
    more = f" and {len(releases) - 6} older" if len(releases) > 6 else ""
    return f"Releases held (seq, version): {held}{more}"


def target_hint(sites: tuple[str, ...]) -> str:
    """How a target is written, with this fleet's own site names as the example."""
    example = ",".join(sites[:2]) or "takengon"
    return f"Target: all · site {example} · kind air · tag pilot · boards ID,ID"


class StartRolloutScreen(ModalScreen[RolloutRequest | None]):
    """Dismissed with the request when the form is valid, ``None`` when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    #: (field, label, placeholder, default)
    FIELDS: ClassVar[tuple[tuple[str, str, str, str], ...]] = (
        ("release", "Release seq", "7", ""),
        ("target", "Target", "all, or site/kind/tag/boards NAME,…", ""),
        ("canary", "Canary boards", "1", "1"),
        ("waves", "Waves (% of the rest, cumulative)", "25,100", "100"),
        ("soak", "Soak (s, one or per wave)", "3600,600", "600"),
        ("failures", "Failures allowed per wave (%)", "0", "0"),
    )

    def __init__(self, sites: tuple[str, ...], releases: tuple[tuple[int, str], ...] = ()) -> None:
        super().__init__()
        self.sites = sites
        self.releases = releases
        self.error = Static("", id="start-error")

    def compose(self) -> ComposeResult:
        with Vertical(id="start-form"):
            yield Static("Start a rollout", id="start-title")
            yield Static(releases_text(self.releases), id="start-releases")
            for name, label, placeholder, default in self.FIELDS:
                if name == "release" and self.releases:
                    default = str(self.releases[0][0])
                with Horizontal(classes="start-field"):
                    yield Label(label)
                    yield Input(default, placeholder=placeholder, id=f"start-{name}")
            yield Static(target_hint(self.sites), id="start-hint")
            yield self.error
            with Horizontal(id="start-buttons"):
                yield Button("Start…", variant="primary", id="start-ok")
                yield Button("Cancel", id="start-cancel")

    def on_mount(self) -> None:
        self.query_one("#start-release", Input).focus()

    def form(self) -> StartForm:
        values = {name: self.query_one(f"#start-{name}", Input).value for name, *_ in self.FIELDS}
        return StartForm(**values)

    def submit(self) -> None:
        try:
            request = parse_start_form(self.form(), self.sites)
        except ValueError as exc:
            self.error.update(str(exc))
            return
        self.dismiss(request)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start-ok":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
