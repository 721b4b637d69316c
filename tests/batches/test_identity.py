"""The gateway's key: created 0600 on first start, loaded after, exported, rotated."""

from __future__ import annotations

import argparse
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.batches import keys as identity
from gateway.batches.format import ChainState, build, decode, key_id, public_bytes
from gateway.batches.verify import ChainVerifier, KeySet
from gateway.errors import KeyFileError
from tests.batches.conftest import rows


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_file_is_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    ident = identity.load_or_create(tmp_path / "state")
    keys = tmp_path / "state" / "keys"
    assert _mode(keys / "gateway.key") == 0o600
    assert _mode(keys) == 0o700
    assert ident.kid == key_id(ident.current.public)


def test_key_file_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        identity.load_or_create(tmp_path)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "keys" / "gateway.key") == 0o600


def test_key_file_is_never_world_readable_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Record the mode every path gets at creation: the key must be born 0600, not chmod-ed later.
    created: list[tuple[str, int]] = []
    real_open = os.open

    def spying_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT:
            created.append((os.fspath(path), mode))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", spying_open)
    identity.load_or_create(tmp_path)
    key_files = [(p, m) for p, m in created if "gateway.key" in p]
    assert key_files
    assert all(mode == 0o600 for _, mode in key_files)


def test_second_start_loads_the_same_key(tmp_path: Path) -> None:
    first = identity.load_or_create(tmp_path)
    second = identity.load_or_create(tmp_path)
    assert second.current.public == first.current.public
    assert identity.load(tmp_path).kid == first.kid


def test_load_without_a_key_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no gateway key"):
        identity.load(tmp_path)


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    identity.load_or_create(tmp_path)
    (tmp_path / "keys" / "gateway.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        identity.load_or_create(tmp_path)


def test_a_garbage_key_file_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    fd = os.open(keys / "gateway.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        identity.load_or_create(tmp_path)


def test_public_key_export_loads_as_spki_pem_and_matches(tmp_path: Path) -> None:
    ident = identity.load_or_create(tmp_path)
    public = load_pem_public_key(ident.public_pem())
    assert isinstance(public, Ed25519PublicKey)
    assert public_bytes(public) == ident.current.public
    assert (tmp_path / "keys" / "gateway.pub").read_bytes() == ident.public_pem()


def test_private_key_never_appears_in_reprs_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ident = identity.load_or_create(tmp_path)
    secret_pem = (tmp_path / "keys" / "gateway.key").read_text()
    body = "".join(secret_pem.splitlines()[1:-1])
    shown = repr(ident) + repr(ident.current) + caplog.text
    assert ident.kid.hex() in repr(ident)
    assert body not in shown
    assert body[:16] not in shown


def _cli(tmp_path: Path, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    identity.add_key_arguments(parser)
    return parser.parse_args(["--state-dir", str(tmp_path), *flags])


def test_key_command_public_prints_pem_a_consumer_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity.load_or_create(tmp_path)
    args = _cli(tmp_path, "--public")
    assert identity.key_command(args) == 0
    printed = capsys.readouterr().out
    keys = KeySet()
    (kid,) = keys.add_pem(printed)
    assert kid == identity.load(tmp_path).kid


def test_key_command_kid_prints_hex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    identity.load_or_create(tmp_path)
    assert identity.key_command(_cli(tmp_path, "--kid")) == 0
    assert capsys.readouterr().out.strip() == identity.load(tmp_path).kid.hex()


def test_key_command_reports_an_unusable_key_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    identity.load_or_create(tmp_path)
    (tmp_path / "keys" / "gateway.key").chmod(0o640)
    assert identity.key_command(_cli(tmp_path, "--public")) == 2
    assert "accessible by others" in capsys.readouterr().err


def test_rotation_announces_then_switches_keys_and_keeps_the_old_one(tmp_path: Path) -> None:
    ident = identity.load_or_create(tmp_path)
    old = ident.current
    keys = KeySet()
    keys.add(old.public)
    verifier = ChainVerifier(keys)
    chain = ChainState()

    def next_batch() -> bytes:
        nonlocal chain
        signer, announce = ident.signer_for(chain)
        first = chain.seq + 1
        encoded, chain = build(
            signer, chain, rows(1, first_id=first), 1, gateway="gw-1", site="s", next_key=announce
        )
        return encoded

    assert verifier.feed(next_batch()).problems == []
    new = ident.begin_rotation()
    announcing = decode(next_batch())
    assert announcing.kid == old.kid
    assert announcing.next_key == new.public
    after = decode(next_batch())
    assert after.kid == new.kid
    assert after.next_key is None
    assert ident.current.public == new.public
    assert ident.pending is None
    retired = tmp_path / "keys" / "retired" / f"{old.kid.hex()}.key"
    assert _mode(retired) == 0o600
    assert identity.load(tmp_path).kid == new.kid
    assert (tmp_path / "keys" / "gateway.pub").read_bytes() == new.public_pem()
    for batch in (announcing, after):
        assert verifier.feed(batch.encoded).problems == []


def test_rotation_resumes_after_a_restart_between_announcement_and_switch(tmp_path: Path) -> None:
    ident = identity.load_or_create(tmp_path)
    old = ident.current
    new = ident.begin_rotation()
    signer, announce = ident.signer_for(ChainState())
    assert announce == new.public
    _, chain = build(signer, ChainState(), rows(1), 1, gateway="g", site="s", next_key=announce)
    # Restart: a fresh process loads the keys and the stored chain state.
    restarted = identity.load_or_create(tmp_path)
    assert restarted.pending is not None
    signer, announce = restarted.signer_for(chain)
    assert announce is None
    assert public_bytes(signer) == new.public != old.public


def test_rotation_begun_by_the_cli_is_picked_up_by_the_running_signer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = identity.load_or_create(tmp_path)
    assert running.signer_for(ChainState())[1] is None
    assert identity.key_command(_cli(tmp_path, "--rotate")) == 0
    printed = capsys.readouterr()
    _, announce = running.signer_for(ChainState(seq=5, prev=bytes(32)))
    assert announce is not None
    assert key_id(announce).hex() in printed.err
    assert _mode(tmp_path / "keys" / "next.key") == 0o600
