"""The gateway's release cache (``simpul gateway release add``): a release is cached only
if a board would install it, and a refused one leaves the cache and the database untouched."""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
from pathlib import Path

import cbor2
import pytest

from fleet.cli import main
from fleet.release import MAX_RELEASE_BYTES, encode_release
from gateway.codec import cose
from gateway.config import load_config
from gateway.daemon import Gateway
from gateway.errors import ConfigError
from gateway.ota.cache import ReleaseCache
from gateway.store.schema import prepare
from tests.gateway.conftest import gateway_config
from tests.release.chain import APP_FILES, DAY, NOW, Chain, seeded_key

#: Certificates valid for a century, so these tests hold whatever the clock says.
FOREVER = NOW + 100 * 365 * DAY


def manifest(chain: Chain, **fields: object) -> bytes:
    fields.setdefault("certificate", chain.certificate(not_after=FOREVER))
    return chain.manifest(**fields)  # type: ignore[arg-type]


def release_file(tmp_path: Path, data: bytes, name: str = "r.release") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def config(tmp_path: Path, chain: Chain) -> Path:
    """A gateway config naming the test chain's root key; state in ``tmp_path/state``."""
    (tmp_path / "root.pub").write_bytes(chain.root_public)
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[gateway.ota]\nroot_public_key = "{tmp_path / "root.pub"}"\nhw = "esp32"\n'
    )
    return path


def add(config: Path, file: Path) -> int:
    return main(["gateway", "release", "add", str(file), "--config", str(config)])


def cache_contents(state: Path) -> tuple[list[str], dict[str, list[tuple[object, ...]]]]:
    """Every path under the releases directory, and every row of the OTA tables."""
    files = sorted(str(p.relative_to(state)) for p in (state / "releases").rglob("*"))
    if not (state / "gateway.db").exists():
        return files, {}
    db = sqlite3.connect(state / "gateway.db")
    try:
        rows = {
            table: db.execute(f"SELECT * FROM {table}").fetchall()
            for table in ("releases", "ota_revocations", "desired_releases", "board_ota")
        }
    finally:
        db.close()
    return files, rows


def test_a_valid_release_is_cached_with_its_files(
    tmp_path: Path, config: Path, chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    path = release_file(tmp_path, encode_release(manifest(chain, seq=7), APP_FILES))
    assert add(config, path) == 0
    assert capsys.readouterr().out.startswith("cached release 7 1.2.3 esp32 (")
    state = tmp_path / "state"
    for name, content in APP_FILES.items():
        assert (state / "releases" / "7" / name).read_bytes() == content
    files, rows = cache_contents(state)
    assert [name for name in files if ".incoming" in name] == []
    (row,) = rows["releases"]
    assert row[:3] == (7, "1.2.3", "esp32")
    assert row[3] == manifest(chain, seq=7)
    assert rows["ota_revocations"][0][1] == 1
    # The same release again changes nothing.
    assert add(config, path) == 0
    assert capsys.readouterr().out.startswith("already cached release 7")
    assert cache_contents(state) == (files, rows)


def forged(chain: Chain) -> bytes:
    """Signed by a key the root never certified, under the release key's certificate."""
    return encode_release(manifest(chain, signer=seeded_key("mallory")), APP_FILES)


def unsigned(chain: Chain) -> bytes:
    """The manifest's payload without its COSE_Sign1."""
    payload = cose.decode(manifest(chain)).payload
    return encode_release(payload, APP_FILES)


def revoked(chain: Chain) -> bytes:
    revocations = chain.revocations((chain.release_kid,), seq=2)
    return encode_release(manifest(chain, revocations=revocations), APP_FILES)


def bit_flipped_file(chain: Chain) -> bytes:
    files = dict(APP_FILES)
    content = bytearray(files["app.mpy"])
    content[100] ^= 0x01
    files["app.mpy"] = bytes(content)
    return encode_release(manifest(chain), files)


def wrong_hardware(chain: Chain) -> bytes:
    return encode_release(manifest(chain, hw="esp32s3"), APP_FILES)


def wrong_root(chain: Chain) -> bytes:
    """A whole chain under another root key."""
    other = Chain(root=seeded_key("another root"))
    return encode_release(manifest(other), APP_FILES)


def garbage(chain: Chain) -> bytes:
    return b"\x00\xffnot a release at all" * 7


def truncated(chain: Chain) -> bytes:
    return encode_release(manifest(chain), APP_FILES)[:-10]


def not_a_release_map(chain: Chain) -> bytes:
    return bytes(cbor2.dumps({"format": "simpul-release", "v": 1, "manifest": 3, "files": {}}))


def named_manifest(chain: Chain) -> bytes:
    """A file whose name is the manifest's resource name."""
    files = {**APP_FILES, "manifest": b"x"}
    return encode_release(manifest(chain, files=files), files)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (forged, r"\(signature\)"),
        (unsigned, r"\(signature\): manifest is not signed"),
        (wrong_root, r"\(certificate\)"),
        (revoked, r"\(revoked\): release key [0-9a-f]+ is revoked"),
        (bit_flipped_file, r"\(file_digest\): file 'app.mpy'"),
        (wrong_hardware, r"\(hardware\): release is for hardware 'esp32s3', not 'esp32'"),
        (garbage, r"\(malformed\)"),
        (truncated, r"\(malformed\)"),
        (not_a_release_map, r"\(malformed\): release file: manifest is not a byte string"),
        (named_manifest, r"file named 'manifest'"),
    ],
)
def test_a_release_a_board_would_refuse_is_refused_and_nothing_is_written(
    tmp_path: Path,
    config: Path,
    chain: Chain,
    capsys: pytest.CaptureFixture[str],
    make: object,
    said: str,
) -> None:
    state = tmp_path / "state"
    before = cache_contents(state)
    path = release_file(tmp_path, make(chain))  # type: ignore[operator]
    assert add(config, path) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("simpul gateway release: error: release")
    assert re.search(said, err), err
    files, rows = cache_contents(state)
    assert files == before[0] == []
    assert all(table == [] for table in rows.values())


def test_a_release_with_an_older_revocation_list_than_one_cached_is_refused(
    tmp_path: Path, config: Path, chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = encode_release(manifest(chain, seq=8, revocations=chain.revocations(seq=2)), APP_FILES)
    assert add(config, release_file(tmp_path, newer, "8.release")) == 0
    before = cache_contents(tmp_path / "state")
    older = encode_release(manifest(chain, seq=9, revocations=chain.revocations(seq=1)), APP_FILES)
    assert add(config, release_file(tmp_path, older, "9.release")) == 2
    err = capsys.readouterr().err
    assert "(revocations)" in err
    assert err.count("\n") == 1
    assert cache_contents(tmp_path / "state") == before
    assert before[1]["ota_revocations"][0][1] == 2


def test_another_release_under_a_cached_seq_is_refused(
    tmp_path: Path, config: Path, chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(config, release_file(tmp_path, encode_release(manifest(chain), APP_FILES))) == 0
    before = cache_contents(tmp_path / "state")
    files = {**APP_FILES, "app.mpy": b"M\x06\x00\x1f changed"}
    other = release_file(tmp_path, encode_release(manifest(chain, files=files), files), "o")
    assert add(config, other) == 2
    assert "release seq 7 is already cached with another manifest" in capsys.readouterr().err
    assert cache_contents(tmp_path / "state") == before


def test_a_path_that_is_no_release_file_is_refused(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "huge"
    with huge.open("wb") as fp:
        fp.truncate(MAX_RELEASE_BYTES + 1)
    for path, said in [
        (tmp_path / "absent", "is not a file"),
        (tmp_path, "is not a file"),
        (huge, "over the"),
        (release_file(tmp_path, b"", "empty"), "(malformed)"),
    ]:
        assert add(config, path) == 2
        err = capsys.readouterr().err
        assert said in err, err
        assert err.count("\n") == 1, err
    assert cache_contents(tmp_path / "state")[0] == []


def test_without_a_usable_root_key_nothing_is_added(
    tmp_path: Path, chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    path = release_file(tmp_path, encode_release(manifest(chain), APP_FILES))
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n')
    assert add(bare, path) == 2
    assert "no root public key configured" in capsys.readouterr().err
    (tmp_path / "bad.pub").write_text("not a key")
    broken = tmp_path / "broken.toml"
    broken.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[gateway.ota]\nroot_public_key = "{tmp_path / "bad.pub"}"\n'
    )
    assert add(broken, path) == 2
    err = capsys.readouterr().err
    assert "gateway.ota.root_public_key" in err
    assert err.count("\n") == 1
    assert cache_contents(tmp_path / "state")[0] == []


async def test_the_gateway_does_not_start_with_an_unusable_root_key(tmp_path: Path) -> None:
    (tmp_path / "bad.pub").write_bytes(b"\x01" * 7)
    config = gateway_config(tmp_path / "state", **{"ota.root_public_key": tmp_path / "bad.pub"})
    gateway = Gateway(config)
    with pytest.raises(ConfigError, match=r"gateway\.ota\.root_public_key: .* is not a public key"):
        await gateway.start()
    await gateway.stop()


def test_the_hardware_class_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match="hw must be a hardware class name"):
        load_config(env={}, overrides={"ota.hw": "ESP 32"})


def test_a_newer_revocation_list_evicts_the_releases_of_the_key_it_revokes(
    tmp_path: Path, config: Path, chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    old = encode_release(manifest(chain, seq=7), APP_FILES)
    assert add(config, release_file(tmp_path, old, "7.release")) == 0
    db_args = ["--config", str(config)]
    assert main(["gateway", "desired", "set", "--board", "b1", "--release", "7", *db_args]) == 0
    (state / "releases" / "99").mkdir()  # left by a crash: no row names it
    (state / "releases" / ".incoming-8-1234").mkdir()  # an add that crashed mid-way
    rotated = Chain(release=seeded_key("simpul test release 2"))
    revoking = chain.revocations((chain.release_kid,), seq=2)
    new = encode_release(manifest(rotated, seq=8, revocations=revoking), APP_FILES)
    capsys.readouterr()
    assert add(config, release_file(tmp_path, new, "8.release")) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "evicted release 7: its release key is revoked"
    ]
    files, rows = cache_contents(state)
    assert sorted({name.split("/")[1] for name in files}) == ["8"]
    assert [row[0] for row in rows["releases"]] == [8]
    assert rows["desired_releases"] == []
    assert rows["ota_revocations"][0][1] == 2
    # And the evicted release cannot come back.
    assert add(config, release_file(tmp_path, old, "7.release")) == 2
    assert "(revocations)" in capsys.readouterr().err


def test_one_add_at_a_time_per_state_directory(tmp_path: Path, chain: Chain) -> None:
    config = gateway_config(tmp_path / "state")
    config.releases_dir.mkdir(parents=True)
    prepare(config.db_path)
    cache = ReleaseCache(config, chain.root_public)
    data = encode_release(manifest(chain), APP_FILES)
    holder = os.open(config.releases_dir, os.O_RDONLY)  # another add, mid-way
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        adding = threading.Thread(target=cache.add, args=(data,))
        adding.start()
        adding.join(0.3)
        assert adding.is_alive()
        assert cache.releases() == []
    finally:
        os.close(holder)
    adding.join(10)
    assert [r.seq for r in cache.releases()] == [7]
    cache.close()
