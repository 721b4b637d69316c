"""Commands that reach a board: ``reboot`` rides on the board's next 2.04 and is answered once
its health shows it booted again; ``log`` answers with what the gateway has of the board."""

from __future__ import annotations

import asyncio

from hw.engines.fleet import Fleet, plan_fleet
from tests.control.conftest import Setup, topic
from tests.support import FAST, eventually, firmware_starts


async def test_a_reboot_command_reaches_the_board_and_is_answered_once_it_rebooted(
    rig: Setup,
) -> None:
    await asyncio.to_thread(rig.start)
    boards = Fleet(
        plan_fleet(1, seed=21, config=FAST), rig.gateway.state_dir.parent, rig.gateway.address
    )
    boards.start()
    try:
        assert await eventually(lambda: boards.online(5) == 1, 30)
        runner = boards.runners[0]
        board_id = runner.spec.board_id
        await asyncio.sleep(3)  # a health report or two
        # The control process is connected (it has published its state): a command sent
        # before its first connection would have no session at the broker to wait in.
        assert await eventually(lambda: rig.last_state() is not None, 30)
        assert runner.record.boots == 1
        reboot = rig.command("reboot", board_id)
        assert rig.fleet is not None
        await asyncio.to_thread(rig.fleet.publish, topic("commands"), rig.operator.seal(reboot))
        assert await eventually(lambda: any(r["id"] == reboot.id for r in rig.replies()), 40), (
            rig.gateway.stderr_text()[-2000:]
        )
        (reply,) = [r for r in rig.replies() if r["id"] == reboot.id]
        assert reply["ok"] is True, reply
        assert reply["result"]["board"] == board_id
        assert runner.record.boots == 2
        assert reply["result"]["boot_count"] == 2
        assert any(
            "B reboot asked by the gateway" in line
            for line in (runner.root / "console.log").read_text().splitlines()
        )
        assert len(firmware_starts(runner.root)) == 2
        # Asked once, rebooted once: the hint stops with the higher boot count.
        await asyncio.sleep(3)
        assert runner.record.boots == 2
        assert rig.db("SELECT count(*) FROM board_commands") == [(0,)]

        log = rig.command("log", board_id)
        await asyncio.to_thread(rig.fleet.publish, topic("commands"), rig.operator.seal(log))
        assert await eventually(lambda: any(r["id"] == log.id for r in rig.replies()), 20)
        (answer,) = [r for r in rig.replies() if r["id"] == log.id]
        assert answer["ok"] is True
        assert answer["result"]["known"] is True
        assert answer["result"]["health"]["boot_count"] == 2
    finally:
        await boards.stop()
