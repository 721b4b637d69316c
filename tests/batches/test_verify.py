"""Consumers' verification: each problem named by the library and by ``simpul verify``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.cli import main
from gateway.batches.format import ChainState, build, digest, public_bytes
from gateway.batches.verify import ChainVerifier, KeySet, Outcome, iter_sequence
from gateway.errors import BadBatch, UnknownKey
from tests.batches.conftest import chain, rows, write_public_key

ROOT = Path(__file__).resolve().parents[2]


def _verifier(key: Ed25519PrivateKey, *, join: bool = False) -> ChainVerifier:
    keys = KeySet()
    keys.add(key.public_key())
    return ChainVerifier(keys, join=join)


def _feed(verifier: ChainVerifier, batches: list[bytes]) -> list[Outcome]:
    return [verifier.feed(b) for b in batches]


def _kinds(verifier: ChainVerifier) -> list[str]:
    return [p.kind for p in verifier.problems]


def _messages(verifier: ChainVerifier) -> list[str]:
    return [str(p) for p in verifier.problems]


def test_a_complete_chain_verifies_and_yields_every_reading(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(key, 4, per_batch=3)
    verifier = _verifier(key)
    outcomes = _feed(verifier, batches)
    assert verifier.problems == []
    assert not verifier.failed
    readings = [r for o in outcomes for r in o.readings]
    assert [(r.seq, r.board_id, r.time_ms) for r in readings][:2] == [
        (1, "aq-07", 1_700_000_001_000),
        (1, "aq-07", 1_700_000_002_000),
    ]
    assert len(readings) == 12
    assert {r.gateway for r in readings} == {"gw-1"}


def test_missing_batches_are_a_gap_naming_the_range(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(key, 20)
    verifier = _verifier(key)
    _feed(verifier, batches[:16] + batches[19:])
    assert _messages(verifier) == ["gap: gateway gw-1 batches 17..19 missing"]
    assert verifier.failed


def test_a_chain_not_starting_at_batch_1_is_a_gap_unless_joining(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(key, 5)
    verifier = _verifier(key)
    _feed(verifier, batches[2:])
    assert _messages(verifier) == ["gap: gateway gw-1 batches 1..2 missing"]
    joined = _verifier(key, join=True)
    _feed(joined, batches[2:])
    assert joined.problems == []


def test_a_batch_arriving_late_is_reordering(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(key, 4)
    verifier = _verifier(key)
    outcomes = _feed(verifier, [batches[0], batches[2], batches[1], batches[3]])
    assert _messages(verifier) == [
        "gap: gateway gw-1 batch 2 missing",
        "reordering: gateway gw-1 batch 2 arrived after batch 3",
    ]
    assert outcomes[2].readings  # its readings are authentic, still given
    assert verifier.chains["gw-1"].missing == set()


def test_the_same_batch_again_is_a_repeat_not_a_failure(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(key, 3)
    verifier = _verifier(key)
    outcomes = _feed(verifier, [batches[0], batches[1], batches[1], batches[0], batches[2]])
    assert _kinds(verifier) == ["repeat", "repeat"]
    assert str(verifier.problems[0]) == "repeat: gateway gw-1 batch 2 received again"
    assert not verifier.failed
    assert outcomes[2].readings == []  # readings are given once
    assert verifier.chains["gw-1"].repeats == 2


def test_two_different_batches_with_one_seq_are_a_fork(key: Ed25519PrivateKey) -> None:
    batches, state = chain(key, 2)
    other, _ = build(key, state, rows(1, first_id=100), 1, gateway="gw-1", site="kec-a")
    again, _ = build(key, state, rows(1, first_id=200), 1, gateway="gw-1", site="kec-a")
    verifier = _verifier(key)
    _feed(verifier, [*batches, other, again])
    assert _messages(verifier) == ["fork: gateway gw-1 batch 3: two different batches, one seq"]
    assert verifier.failed


def test_a_batch_whose_prev_names_another_batch_is_a_fork(key: Ed25519PrivateKey) -> None:
    batches, state = chain(key, 2)
    wrong = ChainState(seq=state.seq, prev=bytes(32))
    stray, _ = build(key, wrong, rows(1), 1, gateway="gw-1", site="kec-a")
    verifier = _verifier(key)
    _feed(verifier, [*batches, stray])
    assert _messages(verifier) == [
        "fork: gateway gw-1 batch 3 does not follow batch 2 (its prev names another batch)"
    ]


def test_a_late_batch_is_checked_against_its_successor(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(key, 3)
    impostor, _ = build(
        key, ChainState(seq=1, prev=digest(batches[0])), rows(2), 1, gateway="gw-1", site="kec-a"
    )
    verifier = _verifier(key)
    _feed(verifier, [batches[0], batches[2], impostor])
    assert _kinds(verifier) == ["gap", "reordering", "fork"]
    assert "batch 3 does not follow batch 2" in str(verifier.problems[2])


def test_bad_signature_is_named_and_gives_no_readings(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(key, 1)
    tampered = batches[0][:-1] + bytes([batches[0][-1] ^ 0x80])
    verifier = _verifier(key)
    outcome = verifier.feed(tampered)
    assert _messages(verifier) == ["bad_signature: batch 1 of gw-1: signature does not verify"]
    assert outcome.readings == []
    assert "gw-1" not in verifier.chains


def test_unknown_key_is_named(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(Ed25519PrivateKey.generate(), 1)
    verifier = _verifier(key)
    verifier.feed(batches[0])
    assert _kinds(verifier) == ["unknown_key"]
    assert "gateway gw-1 batch 1 is signed by unknown key" in str(verifier.problems[0])


def test_malformed_input_is_named(key: Ed25519PrivateKey) -> None:
    verifier = _verifier(key)
    verifier.feed(b"\xa0")
    assert _messages(verifier) == ["malformed: not a batch: untagged: a COSE_Sign1 carries tag 18"]


def test_chains_of_several_gateways_are_checked_apart(key: Ed25519PrivateKey) -> None:
    one, _ = chain(key, 3, gateway="gw-1")
    two, _ = chain(key, 3, gateway="gw-2")
    verifier = _verifier(key)
    _feed(verifier, [one[0], two[0], one[1], two[2], one[2]])
    assert _messages(verifier) == ["gap: gateway gw-2 batch 2 missing"]


# Key rotation: trusted only when announced by a verified batch of the same gateway.


def _rotating_chain(old: Ed25519PrivateKey, new: Ed25519PrivateKey) -> list[bytes]:
    """Batch 1 and 2 by ``old``, batch 2 announcing ``new``; batches 3 and 4 by ``new``."""
    first, state = build(old, ChainState(), rows(1), 1, gateway="gw-1", site="s")
    announce, state = build(
        old, state, rows(1, first_id=2), 2, gateway="gw-1", site="s", next_key=public_bytes(new)
    )
    third, state = build(new, state, rows(1, first_id=3), 3, gateway="gw-1", site="s")
    fourth, state = build(new, state, rows(1, first_id=4), 4, gateway="gw-1", site="s")
    return [first, announce, third, fourth]


def test_rotation_announced_by_a_verified_batch_is_followed(key: Ed25519PrivateKey) -> None:
    new = Ed25519PrivateKey.generate()
    verifier = _verifier(key)
    _feed(verifier, _rotating_chain(key, new))
    assert verifier.problems == []
    assert verifier.chains["gw-1"].head == 4


def test_a_new_key_without_announcement_is_unknown(key: Ed25519PrivateKey) -> None:
    new = Ed25519PrivateKey.generate()
    first, state = build(key, ChainState(), rows(1), 1, gateway="gw-1", site="s")
    second, _ = build(new, state, rows(1, first_id=2), 2, gateway="gw-1", site="s")
    verifier = _verifier(key)
    _feed(verifier, [first, second])
    assert _kinds(verifier) == ["unknown_key"]


def test_an_announcement_in_a_tampered_batch_is_not_followed(key: Ed25519PrivateKey) -> None:
    new = Ed25519PrivateKey.generate()
    batches = _rotating_chain(key, new)
    announce = batches[1]
    tampered = announce[:-1] + bytes([announce[-1] ^ 0x01])
    verifier = _verifier(key)
    _feed(verifier, [batches[0], tampered, batches[2]])
    assert _kinds(verifier) == ["bad_signature", "unknown_key"]


def test_an_announcement_by_an_untrusted_key_is_not_followed(key: Ed25519PrivateKey) -> None:
    attacker, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    batches = _rotating_chain(attacker, new)
    verifier = _verifier(key)
    _feed(verifier, batches)
    assert _kinds(verifier) == ["unknown_key"] * 4


def test_an_announced_key_is_trusted_only_for_its_gateway(key: Ed25519PrivateKey) -> None:
    new = Ed25519PrivateKey.generate()
    verifier = _verifier(key)
    _feed(verifier, _rotating_chain(key, new))
    elsewhere, _ = chain(new, 1, gateway="gw-2")
    verifier.feed(elsewhere[0])
    assert _kinds(verifier) == ["unknown_key"]
    assert "which gateway gw-1 announced for its batches from 3" in str(verifier.problems[0])


def test_the_old_key_signs_nothing_after_its_successor_was_announced(
    key: Ed25519PrivateKey,
) -> None:
    new = Ed25519PrivateKey.generate()
    batches = _rotating_chain(key, new)
    late_old, _ = build(
        key,
        ChainState(seq=2, prev=digest(batches[1])),
        rows(1, first_id=9),
        9,
        gateway="gw-1",
        site="s",
    )
    verifier = _verifier(key)
    _feed(verifier, [*batches[:2], late_old])
    assert _kinds(verifier) == ["retired_key"]
    assert "retired after batch 2" in str(verifier.problems[0])
    verifier.feed(batches[1])  # the announcing batch itself, again: still fine
    assert _kinds(verifier) == ["retired_key", "repeat"]


# KeySet loading.


def test_keyset_loads_pem_files_and_strings(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = write_public_key(tmp_path / "gw.pub", key)
    keys = KeySet.from_files([path])
    assert len(keys) == 1
    two = KeySet()
    pem = (
        path.read_text()
        + write_public_key(tmp_path / "b.pub", Ed25519PrivateKey.generate()).read_text()
    )
    assert len(two.add_pem(pem)) == 2


def test_keyset_refuses_what_is_not_an_ed25519_public_key(tmp_path: Path) -> None:
    (tmp_path / "x.pem").write_text("hello")
    with pytest.raises(UnknownKey, match="no PEM public key"):
        KeySet.from_files([tmp_path / "x.pem"])
    with pytest.raises(UnknownKey, match="cannot read key file"):
        KeySet.from_files([tmp_path / "absent.pem"])


# The CBOR sequence reader.


def test_iter_sequence_splits_batches_and_reports_truncation(key: Ed25519PrivateKey) -> None:
    batches, _ = chain(key, 3)
    assert list(iter_sequence(io.BytesIO(b"".join(batches)))) == batches
    reader = iter_sequence(io.BytesIO(b"".join(batches)[:-5]))
    assert next(reader) == batches[0]
    assert next(reader) == batches[1]
    with pytest.raises(BadBatch, match=f"input at byte {len(batches[0]) + len(batches[1])}"):
        next(reader)


# ``simpul verify``, in process.


def _run_cli(
    args: list[str],
    stdin: bytes | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def key_file(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    return write_public_key(tmp_path / "gw-1.pub", key)


def test_cli_prints_readings_as_json_lines_and_exits_0(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches, _ = chain(key, 2, per_batch=2)
    (tmp_path / "b.cbor").write_bytes(b"".join(batches))
    code, out, err = _run_cli(
        ["--key", str(key_file), "--file", str(tmp_path / "b.cbor")], None, capsys, monkeypatch
    )
    assert (code, err) == (0, "")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4
    assert lines[0] == {
        "gateway": "gw-1",
        "site": "kec-a",
        "seq": 1,
        "board": "aq-07",
        "name": "pm2_5",
        "unit": "ug/m3",
        "kind": "v",
        "value": 10.25,
        "time_ms": 1_700_000_001_000,
    }


@pytest.mark.parametrize(
    ("arrange", "named"),
    [
        (lambda b: b[:2] + b[4:], "gap: gateway gw-1 batches 3..4 missing"),
        (
            lambda b: [b[0], b[2], b[1], b[3], b[4]],
            "reordering: gateway gw-1 batch 2 arrived after batch 3",
        ),
        (
            lambda b: [*b[:3], b[3][:-1] + bytes([b[3][-1] ^ 1]), b[4]],
            "bad_signature: batch 4 of gw-1",
        ),
        (lambda b: [*b, b"\x01"], "malformed: not a batch"),
        (lambda b: [*b, b[2][:-3]], "malformed: input at byte"),
    ],
    ids=["missing", "reordered", "tampered", "not-a-batch", "truncated"],
)
def test_cli_names_each_problem_and_exits_1(
    key: Ed25519PrivateKey,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arrange: object,
    named: str,
) -> None:
    batches, _ = chain(key, 5)
    stream = b"".join(arrange(batches))  # type: ignore[operator]
    code, _, err = _run_cli(["--key", str(key_file)], stream, capsys, monkeypatch)
    assert code == 1
    assert f"simpul verify: {named}" in err


def test_cli_names_a_fork(
    key: Ed25519PrivateKey,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches, _ = chain(key, 2)
    other, _ = build(
        key,
        ChainState(seq=1, prev=digest(batches[0])),
        rows(1, first_id=50),
        5,
        gateway="gw-1",
        site="kec-a",
    )
    code, _, err = _run_cli(
        ["--key", str(key_file)], b"".join([*batches, other]), capsys, monkeypatch
    )
    assert code == 1
    assert "fork: gateway gw-1 batch 2: two different batches, one seq" in err


def test_cli_wrong_key_is_unknown_key(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches, _ = chain(key, 1)
    other = write_public_key(tmp_path / "other.pub", Ed25519PrivateKey.generate())
    code, out, err = _run_cli(["--key", str(other)], batches[0], capsys, monkeypatch)
    assert code == 1
    assert "unknown_key: gateway gw-1 batch 1 is signed by unknown key" in err
    assert out == ""


def test_cli_repeats_are_reported_but_exit_0(
    key: Ed25519PrivateKey,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches, _ = chain(key, 2, per_batch=1)
    code, out, err = _run_cli(
        ["--key", str(key_file)], b"".join([*batches, batches[1]]), capsys, monkeypatch
    )
    assert code == 0
    assert "repeat: gateway gw-1 batch 2 received again (not a failure)" in err
    assert len(out.splitlines()) == 2


def test_cli_report_summarises_each_gateway(
    key: Ed25519PrivateKey,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches, _ = chain(key, 5)
    code, out, _ = _run_cli(
        ["--key", str(key_file), "--report"],
        b"".join(batches[:2] + batches[3:]),
        capsys,
        monkeypatch,
    )
    assert code == 1
    assert out.splitlines() == [
        "gateway gw-1 site kec-a: 4 batches (1..5), 12 readings, 0 repeats, 1 still missing",
        "gap: gateway gw-1 batch 3 missing",
        "FAILED: 1 problem(s)",
    ]


def test_cli_usage_errors_exit_2(
    tmp_path: Path,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SystemExit) as no_key:
        _run_cli([], b"", capsys, monkeypatch)
    assert no_key.value.code == 2
    assert "the following arguments are required: --key" in capsys.readouterr().err
    assert _run_cli(["--key", str(tmp_path / "nope.pub")], b"", capsys, monkeypatch)[0] == 2
    code, _, err = _run_cli(
        ["--key", str(key_file), "--mqtt", "127.0.0.1:1"], b"", capsys, monkeypatch
    )
    assert (code, "--mqtt needs --topic" in err) == (2, True)
    code, _, err = _run_cli(
        ["--key", str(key_file), "--file", str(tmp_path / "absent.cbor")], None, capsys, monkeypatch
    )
    assert code == 2
    assert "cannot read" in err


def test_cli_help_shows_the_key_as_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        main(["verify", "--help"])
    assert shown.value.code == 0
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert " --key FILE" in usage
    assert "[--key FILE]" not in usage


@pytest.mark.parametrize("report", [False, True])
def test_cli_an_empty_input_is_a_failure_not_ok(
    key_file: Path,
    report: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["--key", str(key_file), *(["--report"] if report else [])]
    code, out, err = _run_cli(args, b"", capsys, monkeypatch)
    assert code == 1
    assert "empty: no batches in the input: nothing was verified" in err
    assert "OK" not in out
    if report:
        assert "FAILED: 1 problem(s)" in out


def test_verify_runs_where_the_coap_stack_is_not_installed(
    tmp_path: Path, key: Ed25519PrivateKey, key_file: Path
) -> None:
    """A city's data platform runs ``simpul verify``: it needs no CoAP stack, so none loads."""
    batches, _ = chain(key, 3)
    (tmp_path / "batches.cbor").write_bytes(b"".join(batches))
    blocker = (
        "import sys\n"
        "class NoCoap:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'aiocoap':\n"
        "            raise ImportError('aiocoap is not installed here')\n"
        "sys.meta_path.insert(0, NoCoap())\n"
        "from fleet.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "assert not any(m.split('.')[0] == 'aiocoap' for m in sys.modules), 'aiocoap loaded'\n"
        "sys.exit(code)\n"
    )
    args = ["verify", "--key", str(key_file), "--report", "--file", str(tmp_path / "batches.cbor")]
    done = subprocess.run(
        [sys.executable, "-c", blocker, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "OK: every batch verified" in done.stdout


def test_simpul_verify_reads_batches_piped_on_stdin(
    tmp_path: Path, key: Ed25519PrivateKey, key_file: Path
) -> None:
    batches, _ = chain(key, 3)
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "verify", "--key", str(key_file), "--report"],
        input=b"".join(batches[:1] + batches[2:]),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert b"gap: gateway gw-1 batch 2 missing" in done.stderr
    assert b"FAILED: 1 problem(s)" in done.stdout
