"""``simpul board info|config|reset|logs`` against an emulated board on the real MicroPython
VM, over its pty: what a technician reads and changes on a board already in the field."""

from __future__ import annotations

import json
from pathlib import Path

from tests.board.test_flash import simpul
from tests.support import eventually, serial_board


async def test_info_config_reset_and_logs_on_a_running_board(tmp_path: Path) -> None:
    async with serial_board("mpy", tmp_path / "boards") as board:
        port = board.serial_path
        assert port is not None
        board_id = board.spec.board_id

        code, out, err, _ = await simpul("board", "info", port, "--json")
        assert code == 0, err
        info = json.loads(out)
        assert info["board_id"] == board_id
        assert info["micropython"].startswith("1.")
        assert info["flash_size"] > info["flash_free"] > 0
        assert info["heap_free"] > 0

        # A setting the firmware's own parser accepts is written, verified, read back.
        config = board.root / "flash" / "config.json"
        code, out, err, _ = await simpul("board", "config", port, "--set", "health_every=7")
        assert code == 0, err
        assert "config written and verified" in out
        assert json.loads(config.read_text())["health_every"] == 7
        # One it refuses changes nothing, and says why in one line.
        before = config.read_bytes()
        code, out, err, _ = await simpul("board", "config", port, "--set", "interval_s=-1")
        assert code == 1
        errors = [line for line in err.splitlines() if line.startswith("simpul board config:")]
        assert len(errors) == 1, err
        assert "interval_s" in errors[0]
        assert config.read_bytes() == before

        # A restart boots the board again, with the new setting.
        boots = board.record.boots
        code, out, err, _ = await simpul("board", "reset", port)
        assert code == 0, err
        assert await eventually(lambda: board.record.boots > boots, 30)
        assert board.config["health_every"] == 7

        # Its console, followed for a while: samples taken, and no gateway answering (this
        # board's gateway address has nobody behind it).
        code, out, err, _ = await simpul("board", "logs", port, "--seconds", "4")
        assert code == 0, err
        lines = out.splitlines()
        assert sum(line.startswith("S ") for line in lines) >= 3, out
        assert any(line.startswith("E gateway timeout") for line in lines), out
