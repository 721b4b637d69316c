"""A/B application slots: the trial slot boots once, falls back unless confirmed."""

from __future__ import annotations

from pathlib import Path

import slots

from hw.flash import Flash


def test_a_fresh_board_boots_slot_a(tmp_path: Path) -> None:
    state = slots.read(Flash(tmp_path))
    assert slots.choose(state)[0] == "a"


def test_trial_slot_boots_once_then_falls_back_unless_confirmed(tmp_path: Path) -> None:
    flash = Flash(tmp_path)
    slots.write(flash, {"active": "a", "trial": "b", "trial_boots": 0})
    slot, state = slots.choose(slots.read(flash))
    assert slot == "b"
    slots.write(flash, state)
    # Reset before the app confirmed the trial: the next boot is the old slot again.
    slot, state = slots.choose(slots.read(flash))
    assert slot == "a"
    assert state["trial"] is None
    slots.write(flash, state)
    assert slots.choose(slots.read(flash))[0] == "a"


def test_confirmed_trial_becomes_the_active_slot(tmp_path: Path) -> None:
    flash = Flash(tmp_path)
    slot, state = slots.choose({"active": "a", "trial": "b", "trial_boots": 0})
    assert slot == "b"
    slots.write(flash, slots.confirm(state))
    assert slots.choose(slots.read(flash)) == (
        "b",
        {"active": "b", "trial": None, "trial_boots": 0},
    )


def test_a_corrupt_slots_file_boots_slot_a(tmp_path: Path) -> None:
    (tmp_path / "slots.json").write_bytes(b'{"active": "b", "tri')
    assert slots.choose(slots.read(Flash(tmp_path)))[0] == "a"
    (tmp_path / "slots.json").write_text('{"active": "z", "trial": "a"}')
    assert slots.choose(slots.read(Flash(tmp_path)))[0] == "a"
