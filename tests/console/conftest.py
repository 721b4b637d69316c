"""Fixtures of the console's tests: no cursor blink, the clock fixed, a fake fleet."""

from __future__ import annotations

import pytest

from fleet.console.app import ConsoleApp
from fleet.console.screens.audit import AuditScreen
from fleet.console.screens.boards import BoardsScreen
from tests.console.fakes import NOW_MS, FakeFleet

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BoardsScreen, "CURSOR_BLINK", False)
    monkeypatch.setattr(AuditScreen, "CURSOR_BLINK", False)


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


@pytest.fixture
def console(fleet: FakeFleet) -> ConsoleApp:
    """The app over the fake fleet, at the fixed time, polling often (live updates in ms)."""
    return ConsoleApp(fleet, refresh_s=0.1, clock=lambda: NOW_MS)
