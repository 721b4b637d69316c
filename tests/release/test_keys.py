"""The fleet's keys (fleet/keys.py, fleet/keyfiles.py): the offline root key, release keys it
certifies, rotation and revocation, and ``simpul fleet keys``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from fleet import keyfiles, keys
from fleet.certs import decode_revocations, verify_certificate, verify_revocations
from fleet.errors import KeyStoreError, PassphraseError
from gateway.codec import cose
from tests.release.chain import DAY, NOW
from tests.release.conftest import ROOT

PASSPHRASE = "correct horse battery staple"


def simpul(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    return tmp_path / "fleet"


@pytest.fixture
def root_key(tmp_path: Path) -> Path:
    usb = tmp_path / "usb"
    usb.mkdir()
    return usb / "root.key"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# The root key file.


def test_root_key_is_encrypted_pkcs8_with_600000_pbkdf2_rounds(root_key: Path) -> None:
    key = keyfiles.create_root_key(root_key, PASSPHRASE)
    pem = root_key.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert mode(root_key) == 0o600
    asn1 = subprocess.run(
        ["openssl", "asn1parse", "-in", str(root_key)], capture_output=True, text=True, check=True
    ).stdout
    assert ":PBES2" in asn1
    assert ":PBKDF2" in asn1
    assert ":hmacWithSHA256" in asn1
    assert ":aes-256-cbc" in asn1
    assert "INTEGER           :0927C0" in asn1  # 600000
    # Readable by OpenSSL and cryptography with the passphrase alone, and by nothing without.
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(root_key), "-passin", "env:P", "-pubout"],
        capture_output=True,
        env={**os.environ, "P": PASSPHRASE},
        check=True,
    ).stdout
    assert public == keyfiles.public_pem(key)
    loaded = load_pem_private_key(pem, password=PASSPHRASE.encode())
    assert isinstance(loaded, Ed25519PrivateKey)
    assert cose.public_bytes(loaded) == cose.public_bytes(key)
    with pytest.raises(TypeError):
        load_pem_private_key(pem, password=None)


def test_root_key_with_a_wrong_passphrase_is_refused(root_key: Path) -> None:
    keyfiles.create_root_key(root_key, PASSPHRASE)
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        keyfiles.load_root_key(root_key, PASSPHRASE + "!")


def test_root_key_needs_a_long_passphrase(root_key: Path) -> None:
    with pytest.raises(PassphraseError, match="12 characters"):
        keyfiles.create_root_key(root_key, "short")
    assert not root_key.exists()


def test_a_key_file_is_never_overwritten(root_key: Path) -> None:
    root_key.write_bytes(b"precious")
    with pytest.raises(KeyStoreError, match="never overwritten"):
        keyfiles.create_root_key(root_key, PASSPHRASE)
    assert root_key.read_bytes() == b"precious"


def test_a_key_file_others_can_read_is_refused(root_key: Path) -> None:
    keyfiles.create_root_key(root_key, PASSPHRASE)
    root_key.chmod(0o640)
    with pytest.raises(KeyStoreError, match="accessible by others"):
        keyfiles.load_root_key(root_key, PASSPHRASE)


def test_key_files_are_0600_whatever_the_umask(fleet_dir: Path, root_key: Path) -> None:
    old = os.umask(0)
    try:
        keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW)
    finally:
        os.umask(old)
    assert mode(root_key) == 0o600
    assert mode(fleet_dir) == 0o700
    for path in (fleet_dir / "keys").iterdir():
        assert mode(path) == 0o600, path


# Passphrases.


def test_passphrase_from_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keys.PASSPHRASE_ENV, PASSPHRASE)

    def no_prompt(prompt: str) -> str:
        raise AssertionError("prompted")

    assert keys.passphrase_from_env_or_prompt(no_prompt, new=True) == PASSPHRASE
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "")
    with pytest.raises(PassphraseError, match="empty"):
        keys.passphrase_from_env_or_prompt(no_prompt, new=False)


def test_a_new_passphrase_is_asked_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keys.PASSPHRASE_ENV, raising=False)
    answers = iter([PASSPHRASE, PASSPHRASE + "?"])
    with pytest.raises(PassphraseError, match="differ"):
        keys.passphrase_from_env_or_prompt(lambda prompt: next(answers), new=True)
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return PASSPHRASE

    assert keys.passphrase_from_env_or_prompt(prompt, new=True) == PASSPHRASE
    assert len(asked) == 2
    asked.clear()
    assert keys.passphrase_from_env_or_prompt(prompt, new=False) == PASSPHRASE
    assert len(asked) == 1


def test_the_cli_takes_no_passphrase_on_its_command_line(fleet_dir: Path, root_key: Path) -> None:
    done = simpul(
        "fleet",
        "keys",
        "init",
        "--root-key",
        str(root_key),
        "--fleet-dir",
        str(fleet_dir),
        "--passphrase",
        PASSPHRASE,
    )
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr
    assert not root_key.exists()


# init, rotate, show.


def test_init_makes_a_root_key_and_a_release_key_it_certifies(
    fleet_dir: Path, root_key: Path
) -> None:
    signer = keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW, valid_days=30)
    root = keyfiles.load_root_key(root_key, PASSPHRASE)
    assert keys.root_public_key(fleet_dir) == cose.public_bytes(root)
    cert = verify_certificate(signer.certificate, cose.public_bytes(root), now=NOW + 30 * DAY)
    assert cert.kid == signer.kid == cose.key_id(cose.public_bytes(signer.key))
    assert (cert.role, cert.serial, cert.not_after) == ("release", 1, NOW + 30 * DAY)
    listed = verify_revocations(signer.revocations, cose.public_bytes(root))
    assert (listed.seq, listed.revoked) == (1, ())
    loaded = keys.load_signer(fleet_dir)
    assert (loaded.kid, loaded.certificate, loaded.revocations) == (
        signer.kid,
        signer.certificate,
        signer.revocations,
    )
    # The root private key is nowhere in the fleet directory.
    secret = root.private_bytes_raw()
    for path in fleet_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path


def test_init_refuses_a_root_key_inside_the_fleet_dir(fleet_dir: Path) -> None:
    with pytest.raises(KeyStoreError, match="apart from the fleet directory"):
        keys.init_fleet(fleet_dir, fleet_dir / "root.key", PASSPHRASE, now=NOW)


def test_init_refuses_an_initialised_fleet_dir(
    fleet_dir: Path, root_key: Path, tmp_path: Path
) -> None:
    keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW)
    state = (fleet_dir / "state.json").read_bytes()
    with pytest.raises(KeyStoreError, match="already a fleet directory"):
        keys.init_fleet(fleet_dir, tmp_path / "other.key", PASSPHRASE, now=NOW)
    assert (fleet_dir / "state.json").read_bytes() == state


def test_rotate_certifies_a_new_key_and_revokes_the_old(fleet_dir: Path, root_key: Path) -> None:
    first = keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW)
    second, listed = keys.rotate(fleet_dir, root_key, PASSPHRASE, now=NOW + DAY)
    assert second.kid != first.kid
    assert (listed.seq, listed.revoked) == (2, (first.kid,))
    root = keys.root_public_key(fleet_dir)
    cert = verify_certificate(second.certificate, root, now=NOW + DAY)
    assert cert.serial == 2
    assert verify_revocations(second.revocations, root, seen=2).revoked == (first.kid,)
    assert not (fleet_dir / "keys" / f"release-{first.kid.hex()}.key").exists()
    assert keys.load_signer(fleet_dir).kid == second.kid
    _third, listed = keys.rotate(fleet_dir, root_key, PASSPHRASE, now=NOW + 2 * DAY)
    assert listed.seq == 3
    assert set(listed.revoked) == {first.kid, second.kid}


def test_an_operator_key_is_certified_for_the_control_channel_only(
    fleet_dir: Path, root_key: Path
) -> None:
    keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW)
    with pytest.raises(KeyStoreError, match="no operator key"):
        keys.load_operator(fleet_dir)
    operator, listed = keys.certify_operator(fleet_dir, root_key, PASSPHRASE, now=NOW)
    root = keys.root_public_key(fleet_dir)
    cert = verify_certificate(operator.certificate, root, role="operator", now=NOW)
    assert cert.kid == operator.kid
    assert listed.seq == 1  # nothing to revoke yet
    with pytest.raises(ValueError, match="role 'operator', not 'release'"):
        verify_certificate(operator.certificate, root, now=NOW)
    assert keys.load_operator(fleet_dir).kid == operator.kid
    assert mode(fleet_dir / "keys" / f"operator-{operator.kid.hex()}.key") == 0o600


def test_a_new_operator_key_revokes_the_old_and_release_rotation_keeps_it(
    fleet_dir: Path, root_key: Path
) -> None:
    release = keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW)
    first, _ = keys.certify_operator(fleet_dir, root_key, PASSPHRASE, now=NOW)
    second, listed = keys.certify_operator(fleet_dir, root_key, PASSPHRASE, now=NOW)
    assert (listed.seq, listed.revoked) == (2, (first.kid,))
    assert not (fleet_dir / "keys" / f"operator-{first.kid.hex()}.key").exists()
    _, rotated = keys.rotate(fleet_dir, root_key, PASSPHRASE, now=NOW)
    assert set(rotated.revoked) == {first.kid, release.kid}
    assert second.kid not in rotated.revoked
    assert keys.load_operator(fleet_dir).kid == second.kid


def test_rotate_after_an_interrupted_rotation_revokes_the_orphan(
    fleet_dir: Path, root_key: Path
) -> None:
    first = keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW)
    # A rotation that certified a key, then died before the list and the state were written.
    orphan = keys._new_release_key(
        keys.FleetDir(fleet_dir),
        keyfiles.load_root_key(root_key, PASSPHRASE),
        serial=2,
        now=NOW,
        valid_days=1,
    )
    new, listed = keys.rotate(fleet_dir, root_key, PASSPHRASE, now=NOW)
    assert set(listed.revoked) == {first.kid, orphan.kid}
    assert new.kid not in listed.revoked


def test_rotate_refuses_another_root_key(fleet_dir: Path, root_key: Path, tmp_path: Path) -> None:
    keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW)
    other = tmp_path / "other.key"
    keyfiles.create_root_key(other, PASSPHRASE)
    before = (fleet_dir / "revocations.cose").read_bytes()
    with pytest.raises(KeyStoreError, match="is not the root key"):
        keys.rotate(fleet_dir, other, PASSPHRASE, now=NOW)
    with pytest.raises(PassphraseError):
        keys.rotate(fleet_dir, root_key, "not the passphrase", now=NOW)
    assert (fleet_dir / "revocations.cose").read_bytes() == before


def test_release_seq_only_grows_and_survives(fleet_dir: Path, root_key: Path) -> None:
    keys.init_fleet(fleet_dir, root_key, PASSPHRASE, now=NOW)
    assert [keys.reserve_release_seq(fleet_dir) for _ in range(3)] == [1, 2, 3]
    keys.rotate(fleet_dir, root_key, PASSPHRASE, now=NOW)
    assert keys.reserve_release_seq(fleet_dir) == 4
    assert json.loads((fleet_dir / "state.json").read_text())["release_seq"] == 4


def test_fleet_dir_defaults_to_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(keys.FLEET_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert keys.default_fleet_dir() == tmp_path / "data" / "simpul" / "fleet"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert keys.default_fleet_dir() == tmp_path / "home" / ".local" / "share" / "simpul" / "fleet"
    monkeypatch.setenv(keys.FLEET_DIR_ENV, str(tmp_path / "explicit"))
    assert keys.default_fleet_dir() == tmp_path / "explicit"


def test_cli_init_rotate_show(fleet_dir: Path, root_key: Path, tmp_path: Path) -> None:
    env = {keys.PASSPHRASE_ENV: PASSPHRASE, keys.FLEET_DIR_ENV: str(fleet_dir)}
    pub = tmp_path / "root.pub"
    done = simpul(
        "fleet", "keys", "init", "--root-key", str(root_key), "--root-pub-out", str(pub), env=env
    )
    assert done.returncode == 0, done.stderr
    root_kid = cose.key_id(keyfiles.load_public_key(pub)).hex()
    assert f"root key {root_kid} written to {root_key}" in done.stdout
    first = keys.load_signer(fleet_dir).kid.hex()
    done = simpul("fleet", "keys", "rotate", "--root-key", str(root_key), env=env)
    assert done.returncode == 0, done.stderr
    second = keys.load_signer(fleet_dir).kid.hex()
    assert f"revocation list 2 revokes {first}" in done.stdout
    done = simpul("fleet", "keys", "show", env=env)
    assert done.returncode == 0, done.stderr
    assert f"root key         {root_kid}" in done.stdout
    assert f"{first}  release  serial 1" in done.stdout
    assert done.stdout.count("revoked") == 1
    assert f"{second}  release  serial 2" in done.stdout
    assert "current" in done.stdout
    assert "revocation list  seq 2" in done.stdout
    shown = json.loads(simpul("fleet", "keys", "show", "--json", env=env).stdout)
    assert [(k["kid"], k["status"]) for k in shown["release_keys"]] == [
        (first, "revoked"),
        (second, "current"),
    ]
    assert shown["revocations"]["revoked"] == [first]
    # The passphrase is in no output and no file but the environment it came from.
    for path in [*fleet_dir.rglob("*"), root_key, pub]:
        if path.is_file():
            assert PASSPHRASE.encode() not in path.read_bytes()


def test_cli_without_a_passphrase_or_terminal_says_how(fleet_dir: Path, root_key: Path) -> None:
    env = dict(os.environ)
    env.pop(keys.PASSPHRASE_ENV, None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet.cli",
            "fleet",
            "keys",
            "init",
            "--root-key",
            str(root_key),
            "--fleet-dir",
            str(fleet_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal: getpass falls back to stdin, empty
    )
    assert done.returncode == 2
    assert "SIMPUL_ROOT_PASSPHRASE" in done.stderr
    assert not root_key.exists()


def test_cli_errors_name_the_problem(fleet_dir: Path, root_key: Path) -> None:
    env = {keys.PASSPHRASE_ENV: PASSPHRASE}
    done = simpul("fleet", "keys", "show", "--fleet-dir", str(fleet_dir), env=env)
    assert done.returncode == 2
    assert "run 'simpul fleet keys init' first" in done.stderr
    assert (
        simpul(
            "fleet",
            "keys",
            "init",
            "--root-key",
            str(root_key),
            "--fleet-dir",
            str(fleet_dir),
            env=env,
        ).returncode
        == 0
    )
    done = simpul(
        "fleet",
        "keys",
        "rotate",
        "--root-key",
        str(root_key),
        "--fleet-dir",
        str(fleet_dir),
        env={keys.PASSPHRASE_ENV: "wrong passphrase!"},
    )
    assert done.returncode == 2
    assert "wrong passphrase" in done.stderr
    assert decode_revocations((fleet_dir / "revocations.cose").read_bytes()).seq == 1
