"""``simpul gateway boards import|list|remove``: boards' OSCORE keys by hand, for a gateway the
fleet's control channel does not reach. A keys file that is not one changes nothing; no
listing shows a secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.cli import main
from gateway.oscore.keys import encode_keys_file, generate
from gateway.store.board_keys import BoardKeyTable
from gateway.store.schema import prepare

B1 = generate("aq-0001", b"\x01")
B2 = generate("aq-0002", b"\x02")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    prepare(state / "gateway.db")
    return state


def enrolled(state_dir: Path) -> dict[str, bytes]:
    table = BoardKeyTable(state_dir / "gateway.db", read_only=True)
    try:
        return {k.board_id: k.material.secret for k in table.all()}
    finally:
        table.close()


def boards(*args: str) -> int:
    return main(["gateway", "boards", *args])


def test_import_list_and_remove(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_bytes(encode_keys_file([B1, B2]))
    assert boards("import", str(keys), "--state-dir", str(state_dir)) == 0
    assert "2 enrolled or re-keyed" in capsys.readouterr().out
    assert enrolled(state_dir) == {"aq-0001": B1.material.secret, "aq-0002": B2.material.secret}

    assert boards("list", "--json", "--state-dir", str(state_dir)) == 0
    listed = capsys.readouterr().out
    rows = [json.loads(line) for line in listed.splitlines()]
    assert [(r["board"], r["sid"], r["source"]) for r in rows] == [
        ("aq-0001", "01", "file"), ("aq-0002", "02", "file")
    ]  # fmt: skip
    assert rows[0]["fingerprint"] == B1.material.fingerprint
    for key in (B1, B2):
        assert key.material.secret.hex() not in listed

    assert boards("remove", "aq-0002", "aq-0009", "--state-dir", str(state_dir)) == 0
    assert "1 of 2 boards removed" in capsys.readouterr().out
    assert set(enrolled(state_dir)) == {"aq-0001"}


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'[{"board_id": "aq-0003", "sid": "01"}]',  # no secret
        # A Sender ID another board holds: the whole file refused.
        encode_keys_file([generate("aq-0003", b"\x03"), generate("aq-0004", b"\x01")]),
    ],
)
def test_a_file_that_is_not_a_good_keys_file_changes_nothing(
    state_dir: Path, tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_bytes(encode_keys_file([B1]))
    assert boards("import", str(keys), "--state-dir", str(state_dir)) == 0
    keys.write_bytes(content)
    assert boards("import", str(keys), "--state-dir", str(state_dir)) == 2
    assert capsys.readouterr().err.startswith("simpul gateway boards: error: ")
    assert enrolled(state_dir) == {"aq-0001": B1.material.secret}


def test_a_gateway_with_no_state_is_told_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert boards("list", "--state-dir", str(tmp_path / "none")) == 2
    assert "no gateway state" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
