"""Fixtures of the console's tests: no cursor blink, the clock fixed, a fake fleet."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Input

from fleet.console.app import ConsoleApp
from tests.console.fakes import NOW_MS, FakeFleet

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Input (the filters, the dialogs', the command palette's) draws its cursor
    steadily, so a frame does not depend on when in the blink it was taken."""
    made = Input.__init__

    def steady(self: Input, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self.cursor_blink = False

    monkeypatch.setattr(Input, "__init__", steady)


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


@pytest.fixture
def console(fleet: FakeFleet) -> ConsoleApp:
    """The app over the fake fleet, at the fixed time, polling often (live updates in ms)."""
    return ConsoleApp(fleet, refresh_s=0.1, clock=lambda: NOW_MS)
