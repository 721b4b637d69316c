"""A/B application slots: the trial slot boots once, falls back unless confirmed."""

from __future__ import annotations

from pathlib import Path

import pytest
import slots

from hw.flash import Flash, FlashFaults, PowerCut


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


def test_boot_runs_a_trial_once_and_persists_the_fall_back(tmp_path: Path) -> None:
    flash = Flash(tmp_path)
    slots.write(flash, {"active": "a", "trial": "b", "trial_boots": 0})
    assert slots.boot(flash) == "b"
    assert slots.read(flash) == {"active": "a", "trial": "b", "trial_boots": 1}
    # Reset before the app confirmed it: the boot part falls back, and says so on flash.
    assert slots.boot(flash) == "a"
    assert slots.read(flash) == {"active": "a", "trial": None, "trial_boots": 0}
    assert slots.boot(flash) == "a"


def test_boot_of_a_confirmed_trial_stays_on_it(tmp_path: Path) -> None:
    flash = Flash(tmp_path)
    slots.write(flash, {"active": "a", "trial": "b", "trial_boots": 0})
    assert slots.boot(flash) == "b"
    slots.write(flash, slots.confirm(slots.read(flash)))
    assert [slots.boot(flash), slots.boot(flash)] == ["b", "b"]


def test_boot_of_a_factory_board_writes_nothing(tmp_path: Path) -> None:
    flash = Flash(tmp_path)
    assert slots.boot(flash) == "a"
    assert flash.writes == 0
    assert not (tmp_path / "slots.json").exists()


def test_boot_over_a_torn_slots_file_boots_slot_a(tmp_path: Path) -> None:
    (tmp_path / "slots.json").write_bytes(b'{"active": "b", "trial": "a", "tri')
    assert slots.boot(Flash(tmp_path)) == "a"


def test_power_cut_in_the_boot_write_leaves_the_old_state_to_choose_from_again(
    tmp_path: Path,
) -> None:
    before = {"active": "a", "trial": "b", "trial_boots": 0}
    slots.write(Flash(tmp_path), before)
    with pytest.raises(PowerCut):
        slots.boot(Flash(tmp_path, FlashFaults(cut_at_write=1)))
    assert (tmp_path / "slots.json.tmp").exists()  # the torn write
    assert slots.read(Flash(tmp_path)) == before
    # Power back: the trial still gets its one boot.
    assert slots.boot(Flash(tmp_path)) == "b"
    assert slots.read(Flash(tmp_path))["trial_boots"] == 1
