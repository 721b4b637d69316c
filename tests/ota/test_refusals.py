"""A board refuses what a hostile gateway offers as a release, and keeps running what it runs.

Each attack is served by a rogue gateway (``tests/ota/rogue.py``, real CoAP over UDP on
127.0.0.1) to one emulated board that runs release 5 from slot ``a`` and has seen revocation
list 2. The board must log ``U rejected <reason>: ...``, and after that nothing it runs has
changed: ``/slots.json``, every file of slot ``a``, the anti-rollback counter and the newest
revocation list it knows (``/data/ota.json``); the refusal is in ``ota.json`` and in its
next health report, it does not fetch that release again, and it goes on sampling and
uploading. Attacks on the manifest are refused before any file is fetched; attacks on a
file stop its download at the first block that gives it away.

Most cases run on the CPython engine; three also on the real MicroPython VM (``mpy``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest

from gateway.codec import cose
from hw.engines import runner_for
from hw.engines.fleet import plan_fleet
from tests.ota.rogue import RogueGateway, Served
from tests.release.chain import Chain, seeded_key
from tests.support import FAST, eventually, iter_console

#: What the board runs before the attack: release 5 in slot a, revocation list 2 seen.
RUNNING_SEQ = 5
REVOCATIONS_SEEN = 2
#: The release the rogue says is due.
HINT = 9
ECHO = b"rogue echo 1"
BLOCK = 1024
INTRUDER = seeded_key("simpul test intruder")

#: Release 5's files, named so that no firmware module imports them: an engine that imports
#: a slot's .mpy files from the flash never loads these stand-ins.
RUNNING_FILES = {
    "release5_app.mpy": b"M\x06\x00\x1f" + b"release 5 app " * 90,
    "release5_lib.mpy": b"M\x06\x00\x1f" + b"release 5 lib " * 40,
}
#: The release on offer: app.mpy spans three blocks, cbor.mpy exactly two.
OFFERED_FILES = {
    "app.mpy": b"M\x06\x00\x1f" + bytes(range(256)) * 11,
    "cbor.mpy": b"M\x06\x00\x1f" + bytes(range(255, -1, -1)) * 7 + b"\x00" * 252,
    "senml.mpy": b"M\x06\x00\x1f" + b"senml" * 100,
}
OFFERED_TOTAL = sum(len(data) for data in OFFERED_FILES.values())

#: An update window that never opens (from 0 h to 0 h): an installed release waits.
NEVER = {"ota_window": [0, 0]}
#: How long a board may take to give its verdict (about a second on either engine, here).
VERDICT_S = {"cpython": 12.0, "mpy": 20.0}


def offered(chain: Chain, **changes: Any) -> bytes:
    """The manifest of the release on offer, signed as the fleet signs, with ``changes``."""
    fields: dict[str, Any] = {
        "seq": HINT,
        "files": OFFERED_FILES,
        "revocations": chain.revocations(seq=REVOCATIONS_SEEN),
    }
    fields.update(changes)
    return chain.manifest(**fields)


def offer_with(name: str, served: Served) -> dict[str, bytes | Served]:
    """The release's files as the rogue serves them, ``name`` misrepresented as ``served``."""
    files: dict[str, bytes | Served] = dict(OFFERED_FILES)
    files[name] = served
    return files


def flipped(data: bytes, inside: bytes, bit: int = 0) -> bytes:
    """``data`` with one bit flipped in the last byte of its only copy of ``inside``."""
    at = data.index(inside)
    assert data.find(inside, at + 1) < 0, "the part to flip is not unique"
    at += len(inside) - 1
    return data[:at] + bytes((data[at] ^ (1 << bit),)) + data[at + 1 :]


# -- the manifests of the attacks ---------------------------------------------------------


def unsigned(chain: Chain) -> bytes:
    return bytes(cbor2.loads(offered(chain)).value[2])  # the payload alone, nobody signed it


def signed_by_intruder(chain: Chain) -> bytes:
    # The genuine certificate, the manifest signed by a key the root never certified.
    return offered(chain, signer=INTRUDER)


def signed_by_intruder_under_certified_kid(chain: Chain) -> bytes:
    body = cbor2.loads(offered(chain)).value[2]
    return cose.sign(INTRUDER, body, kid=chain.release_kid)


def key_revoked(chain: Chain) -> bytes:
    revoked = chain.revocations((chain.release_kid,), seq=REVOCATIONS_SEEN)
    return offered(chain, revocations=revoked)


def certified_by_intruder(chain: Chain) -> bytes:
    # A certificate of the right form, for the intruder's key, signed by the intruder.
    certificate = chain.certificate(INTRUDER, by=INTRUDER)
    return offered(chain, signer=INTRUDER, certificate=certificate)


def flipped_file_digest(chain: Chain) -> bytes:
    return flipped(offered(chain), hashlib.sha256(OFFERED_FILES["app.mpy"]).digest())


def flipped_signature(chain: Chain) -> bytes:
    data = offered(chain)
    return data[:-1] + bytes((data[-1] ^ 0x02,))


def flipped_certificate(chain: Chain) -> bytes:
    return flipped(offered(chain), chain.certificate(), bit=3)


def older_release(chain: Chain) -> bytes:
    return offered(chain, seq=RUNNING_SEQ - 2, revocations=chain.revocations(seq=1))


def same_release(chain: Chain) -> bytes:
    return offered(chain, seq=RUNNING_SEQ)


def other_hardware(chain: Chain) -> bytes:
    return offered(chain, hw="esp32s3")


def newer_boot_part(chain: Chain) -> bytes:
    return offered(chain, boot_min=2)


def older_revocations(chain: Chain) -> bytes:
    return offered(chain, revocations=chain.revocations(seq=REVOCATIONS_SEEN - 1))


@dataclass(frozen=True)
class Attack:
    """A release the rogue serves, and the reason the board must give for refusing it."""

    reason: str
    manifest: Callable[[Chain], bytes]
    files: Mapping[str, bytes | Served] = field(default_factory=lambda: dict(OFFERED_FILES))
    config: Mapping[str, Any] = field(default_factory=dict)
    echo: bytes | None = ECHO


MANIFEST_ATTACKS = [
    pytest.param(Attack("signature", unsigned), id="unsigned-manifest"),
    pytest.param(Attack("signature", signed_by_intruder, echo=None), id="wrong-key"),
    pytest.param(
        Attack("signature", signed_by_intruder_under_certified_kid),
        id="wrong-key-under-certified-kid",
    ),
    pytest.param(Attack("revoked", key_revoked), id="revoked-release-key"),
    pytest.param(Attack("certificate", certified_by_intruder), id="key-not-certified-by-root"),
    pytest.param(Attack("signature", flipped_file_digest), id="bit-flipped-manifest-file-digest"),
    pytest.param(Attack("signature", flipped_signature), id="bit-flipped-manifest-signature"),
    pytest.param(Attack("certificate", flipped_certificate), id="bit-flipped-manifest-certificate"),
    pytest.param(Attack("stale", older_release), id="older-release-replayed"),
    pytest.param(Attack("stale", same_release), id="same-release-replayed"),
    pytest.param(Attack("hardware", other_hardware, echo=None), id="wrong-hardware"),
    pytest.param(Attack("boot_version", newer_boot_part), id="needs-newer-boot-part"),
    pytest.param(
        Attack("too_large", offered, config={"slot_bytes": OFFERED_TOTAL - 1}),
        id="larger-than-slot",
    ),
    pytest.param(Attack("revocations", older_revocations), id="older-revocation-list"),
]


# -- the board and what it must keep ------------------------------------------------------


def seed_running_release(flash: Path, chain: Chain) -> None:
    """The flash of a board that installed and confirmed release 5 into slot a."""
    slot = flash / "a"
    slot.mkdir(parents=True)
    manifest = chain.manifest(
        seq=RUNNING_SEQ, files=RUNNING_FILES, revocations=chain.revocations(seq=REVOCATIONS_SEEN)
    )
    (slot / "release.cose").write_bytes(manifest)
    for name, data in RUNNING_FILES.items():
        (slot / name).write_bytes(data)
    (flash / "slots.json").write_text(json.dumps({"active": "a", "trial": None, "trial_boots": 0}))
    (flash / "data").mkdir()
    state = {
        "seq": RUNNING_SEQ,
        "revocations": REVOCATIONS_SEEN,
        "refused": 0,
        "pending": None,
        "slots": {"a": [RUNNING_SEQ, "1.2.3"]},
        "state": "confirmed",
        "detail": None,
    }
    (flash / "data" / "ota.json").write_text(json.dumps(state))


def running_part(flash: Path) -> dict[str, bytes]:
    """What the board runs from: ``/slots.json`` and every file of slot a."""
    files = {"slots.json": (flash / "slots.json").read_bytes()}
    for path in sorted((flash / "a").iterdir()):
        files[f"a/{path.name}"] = path.read_bytes()
    return files


def ota_state(flash: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((flash / "data" / "ota.json").read_text())
    return state


@dataclass
class Board:
    """One board's directory: its console and its flash."""

    root: Path

    @property
    def flash(self) -> Path:
        return self.root / "flash"

    def console(self) -> list[str]:
        return list(iter_console(self.root))

    def first(self, *prefixes: str) -> int | None:
        """The index of the first console line that starts with one of ``prefixes``."""
        for i, line in enumerate(self.console()):
            if line.startswith(prefixes):
                return i
        return None


async def run_against(
    rogue: RogueGateway,
    tmp_path: Path,
    engine: str,
    until: Callable[[Board], bool],
    within: float,
    config: Mapping[str, Any] | None = None,
    prepare: Callable[[Path], None] | None = None,
) -> Board:
    """One board running release 5, pointed at ``rogue``, until ``until`` holds (or
    ``within`` seconds passed); ``prepare`` may add to its flash before it powers on."""
    chain = Chain()
    settings = {
        **FAST,
        "root_key": chain.root_public.hex(),
        "ota_retry_s": 3600,
        # A board that wrongly takes a release installs it but never reboots into it: the
        # test fails on its verdict, and never stops a board in the middle of a boot.
        **NEVER,
        **(config or {}),
    }
    spec = plan_fleet(1, seed=11, config=settings)[0]
    board = Board(tmp_path / "boards" / spec.board_id)
    seed_running_release(board.flash, chain)
    if prepare is not None:
        prepare(board.flash)
    runner = runner_for(engine)(spec, board.root, rogue.address)
    runner.start()
    try:
        await eventually(lambda: until(board), within, step=0.1)
    finally:
        await runner.stop()
    return board


def refused_and_back_to_work(reason: str) -> Callable[[Board], bool]:
    """A verdict is on the console, and (if it is the refusal) a later upload was
    acknowledged: enough to judge. A wrong verdict ends the wait at once."""

    def done(board: Board) -> bool:
        lines = board.console()
        verdict = board.first("U rejected ", "U installed ", "U verified ")
        if verdict is None:
            return False
        if not lines[verdict].startswith(f"U rejected {reason}: "):
            return True
        return any(line.startswith("A ") for line in lines[verdict + 1 :])

    return done


async def assert_refused(
    attack: Attack, tmp_path: Path, engine: str = "cpython"
) -> tuple[RogueGateway, Board]:
    """Serve ``attack`` to a board; check it refused with the attack's reason and kept all
    it runs. Returns the rogue (what it was asked) and the board, for more checks."""
    chain = Chain()
    async with RogueGateway(HINT, attack.manifest(chain), attack.files, echo=attack.echo) as rogue:
        before: dict[str, bytes] = {}

        def keep(flash: Path) -> None:
            before.update(running_part(flash))

        board = await run_against(
            rogue,
            tmp_path,
            engine,
            refused_and_back_to_work(attack.reason),
            VERDICT_S[engine],
            attack.config,
            keep,
        )
    lines = board.console()
    verdict = board.first("U rejected ", "U installed ", "U verified ")
    assert verdict is not None, "the board gave no verdict:\n" + "\n".join(lines[-30:])
    assert lines[verdict].startswith(f"U rejected {attack.reason}: "), lines[verdict]
    # Still sampling and uploading after the refusal.
    assert any(line.startswith("A ") for line in lines[verdict + 1 :]), lines[verdict:]

    assert running_part(board.flash) == before, "the running slot or /slots.json changed"
    state = ota_state(board.flash)
    assert state["seq"] == RUNNING_SEQ
    assert state["revocations"] == REVOCATIONS_SEEN
    assert state["pending"] is None
    assert state["slots"].get("a") == [RUNNING_SEQ, "1.2.3"]
    assert state["state"] == "rejected"
    assert state["detail"].startswith(f"{attack.reason}: "), state["detail"]

    reports = [r["ota"] for r in rogue.health if isinstance(r.get("ota"), dict)]
    rejected = [r for r in reports if r.get("state") == "rejected"]
    assert rejected, f"no health report said the release was rejected: {reports}"
    assert rejected[0]["seq"] == RUNNING_SEQ
    assert str(rejected[0]["detail"]).startswith(f"{attack.reason}: ")

    # Fetched once, then left alone (ota_retry_s), though the rogue keeps hinting it.
    manifest = f"/ota/{HINT}/manifest"
    assert rogue.blocks(manifest).count(0) == 1, rogue.blocks(manifest)
    if attack.echo is not None:
        first = next(r for r in rogue.requests if r.method == "GET")
        assert first.challenged, "the rogue's Echo challenge was never met"
        assert all(r.echo == ECHO for r in rogue.gets()), "a GET was served without the Echo"
    return rogue, board


# -- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("attack", MANIFEST_ATTACKS)
async def test_board_refuses_a_hostile_manifest_before_fetching_any_file(
    tmp_path: Path, attack: Attack
) -> None:
    rogue, board = await assert_refused(attack, tmp_path)
    paths = {r.path for r in rogue.gets()}
    assert paths == {f"/ota/{HINT}/manifest"}, paths
    assert not (board.flash / "b").exists(), "the inactive slot was touched"


@pytest.mark.parametrize(
    ("etag", "blocks"),
    [
        pytest.param("content", [0], id="etag-of-what-is-served"),
        pytest.param("manifest", [0, 1, 2], id="etag-forged-as-the-manifest's"),
    ],
)
async def test_board_refuses_a_bit_flipped_file(
    tmp_path: Path, etag: str, blocks: list[int]
) -> None:
    """The ETag of the flipped file gives it away at its first block; an ETag forged to the
    manifest's digest only delays the refusal to the file's SHA-256, after its last block."""
    genuine = OFFERED_FILES["app.mpy"]
    bad = genuine[:2000] + bytes((genuine[2000] ^ 0x10,)) + genuine[2001:]
    forged = hashlib.sha256(genuine).digest()[:8] if etag == "manifest" else None
    attack = Attack("file_digest", offered, offer_with("app.mpy", Served(bad, etag=forged)))
    rogue, board = await assert_refused(attack, tmp_path)
    assert rogue.blocks(f"/ota/{HINT}/app.mpy") == blocks
    assert not rogue.gets(f"/ota/{HINT}/cbor.mpy"), "the board went on after a bad file"
    assert "file 'app.mpy'" in ota_state(board.flash)["detail"]


@pytest.mark.parametrize(
    ("name", "served"),
    [
        pytest.param(
            "app.mpy", Served(OFFERED_FILES["app.mpy"], endless=True), id="endless-2820-bytes"
        ),
        pytest.param(
            "cbor.mpy", Served(OFFERED_FILES["cbor.mpy"], endless=True), id="endless-2048-bytes"
        ),
        pytest.param(
            "app.mpy",
            Served(
                OFFERED_FILES["app.mpy"] + b"\xa5" * (3 * BLOCK - len(OFFERED_FILES["app.mpy"])),
                etag=hashlib.sha256(OFFERED_FILES["app.mpy"]).digest()[:8],
            ),
            id="last-block-too-long",
        ),
    ],
)
async def test_board_stops_a_file_at_its_declared_size(
    tmp_path: Path, name: str, served: Served
) -> None:
    """The rogue sends more of the file than the manifest declares: every block full and
    "more" without end, or a last block longer than what is left of the file. The board
    never asks for a block past the declared size, nor writes a byte past it."""
    attack = Attack("file_too_large", offered, offer_with(name, served))
    rogue, board = await assert_refused(attack, tmp_path)
    size = len(OFFERED_FILES[name])
    asked = rogue.blocks(f"/ota/{HINT}/{name}")
    assert asked == list(range((size - 1) // BLOCK + 1)), asked
    written = board.flash / "b" / name
    assert not written.exists() or written.stat().st_size <= size
    assert f"file {name!r}" in ota_state(board.flash)["detail"]


@pytest.mark.parametrize("hint", [RUNNING_SEQ, RUNNING_SEQ - 2], ids=["same-seq", "older-seq"])
async def test_board_never_fetches_a_release_hinted_at_or_below_its_counter(
    tmp_path: Path, hint: int
) -> None:
    chain = Chain()
    async with RogueGateway(hint, offered(chain, seq=hint)) as rogue:
        board = await run_against(
            rogue, tmp_path, "cpython", lambda _: len(rogue.health) >= 2, VERDICT_S["cpython"]
        )
    assert len(rogue.health) >= 2, "the board sent no health reports"
    assert not rogue.gets(), rogue.gets()
    assert board.first("U ") is None, board.console()
    assert ota_state(board.flash)["state"] == "confirmed"


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(Attack("signature", flipped_file_digest), id="bit-flipped-manifest"),
        pytest.param(Attack("signature", signed_by_intruder), id="wrong-key"),
        pytest.param(
            Attack(
                "file_too_large",
                offered,
                offer_with("cbor.mpy", Served(OFFERED_FILES["cbor.mpy"], endless=True)),
            ),
            id="endless-file",
        ),
    ],
)
async def test_board_on_the_micropython_vm_refuses(tmp_path: Path, attack: Attack) -> None:
    """The unchanged firmware on the real interpreter: its own Ed25519, SHA-256 and block
    loop, with the same checks as on CPython."""
    rogue, _ = await assert_refused(attack, tmp_path, engine="mpy")
    if attack.reason == "file_too_large":
        assert rogue.blocks(f"/ota/{HINT}/cbor.mpy") == [0, 1]
    else:
        assert {r.path for r in rogue.gets()} == {f"/ota/{HINT}/manifest"}


# -- files the manifest does not list -----------------------------------------------------
#
# The board never meets an unlisted file on its own: it fetches exactly the files its
# manifest lists (manifest.FileCheck refuses any other name with UnlistedFile, but the
# updater only ever asks it about listed ones). What these tests hold instead: whatever the
# rogue offers besides, the slot armed for the trial holds the release's files and nothing
# else. The board installs (a genuine release), and the ota_window that never opens keeps it
# from rebooting into the trial, so the slot can be inspected.


def installed_or_refused(board: Board) -> bool:
    return board.first("U installed ", "U rejected ") is not None


async def install_with_extras(
    tmp_path: Path, prepare: Callable[[Path], None] | None = None
) -> tuple[RogueGateway, Board]:
    chain = Chain()
    extras = {"evil.py": b"import os\n", "main.py": b"print('owned')\n"}
    async with RogueGateway(HINT, offered(chain), {**OFFERED_FILES, **extras}, echo=ECHO) as rogue:
        board = await run_against(
            rogue, tmp_path, "cpython", installed_or_refused, VERDICT_S["cpython"], None, prepare
        )
    line = board.first("U installed ", "U rejected ")
    assert line is not None, board.console()[-30:]
    assert board.console()[line] == f"U installed release {HINT} in slot b"
    assert {r.path for r in rogue.gets()} == {
        f"/ota/{HINT}/{name}" for name in ("manifest", *OFFERED_FILES)
    }
    return rogue, board


async def test_slot_holds_only_the_listed_files_whatever_else_the_rogue_serves(
    tmp_path: Path,
) -> None:
    before: dict[str, bytes] = {}
    _, board = await install_with_extras(tmp_path, lambda flash: before.update(running_part(flash)))
    slot = board.flash / "b"
    assert sorted(p.name for p in slot.iterdir()) == sorted(["release.cose", *OFFERED_FILES])
    for name, data in OFFERED_FILES.items():
        assert (slot / name).read_bytes() == data
    after = running_part(board.flash)
    assert json.loads(after.pop("slots.json")) == {"active": "a", "trial": "b", "trial_boots": 0}
    assert after == {k: v for k, v in before.items() if k != "slots.json"}
    assert ota_state(board.flash)["seq"] == RUNNING_SEQ  # confirmed only after its trial


async def test_resumed_download_leaves_no_unlisted_file_in_the_slot(tmp_path: Path) -> None:
    """A download cut short leaves slot b holding this release's manifest, part of its first
    file and a stray file (here the ``.tmp`` copy ``_hash_prefix`` makes, which a power cut
    leaves behind): resuming must not arm a trial slot holding a file the manifest does
    not list."""
    chain = Chain()

    def interrupted(flash: Path) -> None:
        slot = flash / "b"
        slot.mkdir()
        (slot / "release.cose").write_bytes(offered(chain))
        (slot / "app.mpy").write_bytes(OFFERED_FILES["app.mpy"][:BLOCK])
        (slot / "app.mpy.tmp").write_bytes(OFFERED_FILES["app.mpy"][: BLOCK // 2])

    _, board = await install_with_extras(tmp_path, interrupted)
    slot = board.flash / "b"
    assert sorted(p.name for p in slot.iterdir()) == sorted(["release.cose", *OFFERED_FILES])
