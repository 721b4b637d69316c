"""The fleet's signing keys: an offline root key that certifies release keys, and revokes them.

``simpul fleet keys init --root-key PATH`` makes the root key (Ed25519, passphrase-encrypted
PKCS#8, see ``fleet.keyfiles``; written to ``PATH``, meant to live offline, e.g. on a USB
stick) and a release key in the fleet directory, certified by the root. ``simpul fleet keys
rotate --root-key PATH`` certifies a new release key and revokes every other one in a new
root-signed revocation list, which every release built afterwards carries. ``simpul fleet keys
operator --root-key PATH`` certifies an operator key, which signs the control channel's
desired-state documents and commands (``gateway.control.messages``), and revokes older ones.
``simpul fleet keys show`` lists them. Boards and gateways hold only the root public key
(``--root-pub-out FILE``, or ``<fleet dir>/root.pub``).

The root key's passphrase comes from the environment variable ``SIMPUL_ROOT_PASSPHRASE`` or
else from a prompt (twice when a new key is made); never from the command line, and it is
never printed or logged.

The fleet directory (``--fleet-dir``; else ``$SIMPUL_FLEET_DIR``; else
``$XDG_DATA_HOME/simpul/fleet``, i.e. ``~/.local/share/simpul/fleet``), mode 0700::

    root.pub                   the root public key (PEM SubjectPublicKeyInfo)
    state.json                 {"release_kid": hex, "release_seq": int, "cert_serial": int}:
                               the current release key, the last release seq built, the
                               last certificate serial issued
    revocations.cose           the root's current revocation list (COSE_Sign1, fleet.certs)
    certs/<kid>.cert           every certificate the root issued here (COSE_Sign1)
    keys/release-<kid>.key     the current release key (PKCS#8 PEM, mode 0600); a rotated-out
                               key is revoked and its file deleted
    keys/operator-<kid>.key    the current operator key (state.json "operator_kid"), likewise
    .lock                      held (flock) while any of the above changes

It never holds the root private key: ``init`` refuses a ``--root-key`` inside it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet import keyfiles
from fleet.certs import (
    ROLE_OPERATOR,
    ROLE_RELEASE,
    Certificate,
    RevocationList,
    decode_certificate,
    decode_revocations,
    iso,
    issue_certificate,
    issue_revocations,
)
from fleet.errors import FleetError, KeyStoreError, PassphraseError
from gateway.codec import cose

PASSPHRASE_ENV: Final = "SIMPUL_ROOT_PASSPHRASE"
FLEET_DIR_ENV: Final = "SIMPUL_FLEET_DIR"
DEFAULT_VALID_DAYS: Final = 730
_DAY: Final = 86_400

#: Asks for a passphrase: (prompt) -> passphrase. ``getpass.getpass`` on a terminal.
Prompt = Callable[[str], str]


def default_fleet_dir() -> Path:
    """``$SIMPUL_FLEET_DIR``, else ``$XDG_DATA_HOME/simpul/fleet`` (XDG's default home)."""
    explicit = os.environ.get(FLEET_DIR_ENV)
    if explicit:
        return Path(explicit)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "simpul" / "fleet"


@dataclass(frozen=True)
class FleetDir:
    """The fleet directory's paths (see the module docstring)."""

    path: Path

    @property
    def root_pub(self) -> Path:
        return self.path / "root.pub"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def revocations_file(self) -> Path:
        return self.path / "revocations.cose"

    @property
    def certs(self) -> Path:
        return self.path / "certs"

    @property
    def keys(self) -> Path:
        return self.path / "keys"

    def cert_file(self, kid: bytes) -> Path:
        return self.certs / f"{kid.hex()}.cert"

    def release_key_file(self, kid: bytes) -> Path:
        return self.keys / f"release-{kid.hex()}.key"

    def operator_key_file(self, kid: bytes) -> Path:
        return self.keys / f"operator-{kid.hex()}.key"

    def initialised(self) -> bool:
        return self.state_file.exists()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock: one process changes its state at a time."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            raise KeyStoreError(
                f"{self.path} is no fleet directory: run 'simpul fleet keys init' first"
            ) from None
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read {self.state_file}: {exc}") from None
        if not (
            isinstance(state, dict)
            and isinstance(state.get("release_kid"), str)
            and type(state.get("release_seq")) is int
            and type(state.get("cert_serial")) is int
        ):
            raise KeyStoreError(f"{self.state_file} is not a fleet state file")
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        keyfiles.write_atomic(self.state_file, json.dumps(state, indent=1).encode() + b"\n")


@dataclass(frozen=True, repr=False)
class Signer:
    """A key the root certified, with its certificate and the current revocation list: what
    signs a release (the release key) or a control document (the operator key)."""

    key: Ed25519PrivateKey
    kid: bytes
    certificate: bytes
    revocations: bytes

    def __repr__(self) -> str:
        return f"Signer(kid={self.kid.hex()})"


@dataclass(frozen=True)
class KeysReport:
    """What ``keys show`` prints."""

    fleet_dir: Path
    root_kid: bytes
    current_kid: bytes
    #: The current operator key's kid (None: no operator key certified yet).
    operator_kid: bytes | None
    certificates: tuple[Certificate, ...]
    revocations: RevocationList
    release_seq: int

    def status(self, cert: Certificate, now: int) -> str:
        if cert.kid in self.revocations.revoked:
            return "revoked"
        if not cert.valid_at(now):
            return "expired" if now > cert.not_after else "not yet valid"
        return "current" if cert.kid in (self.current_kid, self.operator_kid) else "valid"

    def as_json(self, now: int) -> dict[str, Any]:
        return {
            "fleet_dir": str(self.fleet_dir),
            "root_kid": self.root_kid.hex(),
            "release_keys": [
                {
                    "kid": c.kid.hex(),
                    "role": c.role,
                    "serial": c.serial,
                    "not_before": c.not_before,
                    "not_after": c.not_after,
                    "status": self.status(c, now),
                }
                for c in self.certificates
            ],
            "revocations": {
                "seq": self.revocations.seq,
                "issued": self.revocations.issued,
                "revoked": [k.hex() for k in self.revocations.revoked],
            },
            "release_seq": self.release_seq,
        }


def passphrase_from_env_or_prompt(prompt: Prompt, *, new: bool) -> str:
    """The root key's passphrase: ``$SIMPUL_ROOT_PASSPHRASE``, else asked (twice if ``new``)."""
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        if not from_env:
            raise PassphraseError(f"{PASSPHRASE_ENV} is set but empty")
        return from_env
    try:
        first = prompt("Root key passphrase: ")
        if new and prompt("Root key passphrase again: ") != first:
            raise PassphraseError("the passphrases differ")
    except EOFError:
        raise PassphraseError(f"no passphrase: set {PASSPHRASE_ENV} or run in a terminal") from None
    return first


def init_fleet(
    fleet_dir: Path,
    root_key_path: Path,
    passphrase: str,
    *,
    now: int,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> Signer:
    """A new root key at ``root_key_path`` and a release key it certifies in ``fleet_dir``."""
    fleet = FleetDir(fleet_dir)
    if _inside(root_key_path, fleet_dir):
        raise KeyStoreError(
            f"the root key must live apart from the fleet directory {fleet_dir} (offline)"
        )
    if root_key_path.exists():
        raise KeyStoreError(f"{root_key_path} exists; a key file is never overwritten")
    if len(passphrase) < keyfiles.MIN_PASSPHRASE:
        raise PassphraseError(
            f"a root key's passphrase needs {keyfiles.MIN_PASSPHRASE} characters or more"
        )
    _make_dirs(fleet)
    with fleet.locked():
        if fleet.initialised():
            raise KeyStoreError(f"{fleet_dir} is already a fleet directory")
        root = keyfiles.create_root_key(root_key_path, passphrase)
        keyfiles.write_atomic(fleet.root_pub, keyfiles.public_pem(root))
        signer = _new_release_key(fleet, root, serial=1, now=now, valid_days=valid_days)
        revocations = issue_revocations(root, seq=1, revoked=(), issued=now)
        keyfiles.write_atomic(fleet.revocations_file, revocations)
        fleet.write_state({"release_kid": signer.kid.hex(), "release_seq": 0, "cert_serial": 1})
    return Signer(signer.key, signer.kid, signer.certificate, revocations)


def rotate(
    fleet_dir: Path,
    root_key_path: Path,
    passphrase: str,
    *,
    now: int,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> tuple[Signer, RevocationList]:
    """Certify a new release key and revoke every other release key certified here."""
    fleet = FleetDir(fleet_dir)
    with fleet.locked():
        state, root, old = _unlock(fleet, root_key_path, passphrase)
        serial = state["cert_serial"] + 1
        signer = _new_release_key(fleet, root, serial=serial, now=now, valid_days=valid_days)
        # Every other certified release key, so a rotation interrupted before now is
        # completed too; operator keys are left as they are.
        others = [
            c.kid for c in _certificates(fleet) if c.role == ROLE_RELEASE and c.kid != signer.kid
        ]
        revoked = [*old.revoked, *others]
        revocations = issue_revocations(root, seq=old.seq + 1, revoked=revoked, issued=now)
        keyfiles.write_atomic(fleet.revocations_file, revocations)
        fleet.write_state({**state, "release_kid": signer.kid.hex(), "cert_serial": serial})
        for kid in others:
            with contextlib.suppress(FileNotFoundError):
                fleet.release_key_file(kid).unlink()
    listed = decode_revocations(revocations)
    return Signer(signer.key, signer.kid, signer.certificate, revocations), listed


def certify_operator(
    fleet_dir: Path,
    root_key_path: Path,
    passphrase: str,
    *,
    now: int,
    valid_days: int = DEFAULT_VALID_DAYS,
) -> tuple[Signer, RevocationList]:
    """Certify a new operator key (what signs the control channel's desired-state documents
    and commands) and revoke every older operator key in a new revocation list."""
    fleet = FleetDir(fleet_dir)
    with fleet.locked():
        state, root, old = _unlock(fleet, root_key_path, passphrase)
        serial = state["cert_serial"] + 1
        signer = _new_key(
            fleet, root, serial=serial, now=now, valid_days=valid_days, role=ROLE_OPERATOR
        )
        others = [
            c.kid
            for c in _certificates(fleet)
            if c.role == ROLE_OPERATOR and c.kid != signer.kid and c.kid not in old.revoked
        ]
        revocations = fleet.revocations_file.read_bytes()
        if others:
            revocations = issue_revocations(
                root, seq=old.seq + 1, revoked=[*old.revoked, *others], issued=now
            )
            keyfiles.write_atomic(fleet.revocations_file, revocations)
        fleet.write_state({**state, "operator_kid": signer.kid.hex(), "cert_serial": serial})
        for kid in others:
            with contextlib.suppress(FileNotFoundError):
                fleet.operator_key_file(kid).unlink()
    return (
        Signer(signer.key, signer.kid, signer.certificate, revocations),
        decode_revocations(revocations),
    )


def load_operator(fleet_dir: Path) -> Signer:
    """The current operator key with its certificate and the current revocation list."""
    fleet = FleetDir(fleet_dir)
    state = fleet.read_state()
    if not isinstance(state.get("operator_kid"), str):
        raise KeyStoreError(
            f"{fleet_dir} has no operator key: run 'simpul fleet keys operator' first"
        )
    kid = bytes.fromhex(state["operator_kid"])
    return _load(fleet, fleet.operator_key_file(kid), kid)


def _unlock(
    fleet: FleetDir, root_key_path: Path, passphrase: str
) -> tuple[dict[str, Any], Ed25519PrivateKey, RevocationList]:
    """The fleet's state, its root key (checked to be this fleet's) and its current
    revocation list: what certifying a key starts from; call holding the lock."""
    state = fleet.read_state()
    root = keyfiles.load_root_key(root_key_path, passphrase)
    if keyfiles.public_pem(root) != fleet.root_pub.read_bytes():
        raise KeyStoreError(f"{root_key_path} is not the root key of {fleet.path}")
    return state, root, decode_revocations(fleet.revocations_file.read_bytes())


def _new_release_key(
    fleet: FleetDir, root: Ed25519PrivateKey, *, serial: int, now: int, valid_days: int
) -> Signer:
    return _new_key(fleet, root, serial=serial, now=now, valid_days=valid_days, role=ROLE_RELEASE)


def _new_key(
    fleet: FleetDir,
    root: Ed25519PrivateKey,
    *,
    serial: int,
    now: int,
    valid_days: int,
    role: str,
) -> Signer:
    if valid_days < 1:
        raise ValueError("a certificate is valid for one day or more")
    fleet.keys.mkdir(mode=keyfiles.DIR_MODE, exist_ok=True)
    fleet.certs.mkdir(mode=keyfiles.DIR_MODE, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    public = cose.public_bytes(key)
    kid = cose.key_id(public)
    certificate = issue_certificate(
        root, public, serial=serial, not_before=now, not_after=now + valid_days * _DAY, role=role
    )
    keyfiles.write_atomic(fleet.cert_file(kid), certificate)
    path = fleet.release_key_file(kid) if role == ROLE_RELEASE else fleet.operator_key_file(kid)
    keyfiles.write_release_key(path, key)
    return Signer(key, kid, certificate, b"")


def load_signer(fleet_dir: Path) -> Signer:
    """The current release key with its certificate and the current revocation list."""
    fleet = FleetDir(fleet_dir)
    state = fleet.read_state()
    kid = bytes.fromhex(state["release_kid"])
    return _load(fleet, fleet.release_key_file(kid), kid)


def _load(fleet: FleetDir, path: Path, kid: bytes) -> Signer:
    key = keyfiles.load_release_key(path)
    if cose.key_id(cose.public_bytes(key)) != kid:
        raise KeyStoreError(f"{path} is not key {kid.hex()}")
    try:
        certificate = fleet.cert_file(kid).read_bytes()
        revocations = fleet.revocations_file.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read the fleet's certificates: {exc}") from None
    return Signer(key, kid, certificate, revocations)


def root_public_key(fleet_dir: Path) -> bytes:
    """The raw root public key the fleet directory records."""
    return keyfiles.load_public_key(FleetDir(fleet_dir).root_pub)


def reserve_release_seq(fleet_dir: Path) -> int:
    """The next release sequence number, recorded before it is used: a build that fails
    leaves a gap, never two releases with one number."""
    fleet = FleetDir(fleet_dir)
    with fleet.locked():
        state = fleet.read_state()
        seq = int(state["release_seq"]) + 1
        fleet.write_state({**state, "release_seq": seq})
    return seq


def report(fleet_dir: Path) -> KeysReport:
    fleet = FleetDir(fleet_dir)
    state = fleet.read_state()
    certificates = sorted(_certificates(fleet), key=lambda c: c.serial)
    return KeysReport(
        fleet_dir=fleet_dir,
        root_kid=cose.key_id(root_public_key(fleet_dir)),
        current_kid=bytes.fromhex(state["release_kid"]),
        operator_kid=bytes.fromhex(state["operator_kid"]) if "operator_kid" in state else None,
        certificates=tuple(certificates),
        revocations=decode_revocations(fleet.revocations_file.read_bytes()),
        release_seq=state["release_seq"],
    )


def _certificates(fleet: FleetDir) -> list[Certificate]:
    return [decode_certificate(p.read_bytes()) for p in sorted(fleet.certs.glob("*.cert"))]


def _make_dirs(fleet: FleetDir) -> None:
    try:
        fleet.path.mkdir(mode=keyfiles.DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyStoreError(f"cannot create {fleet.path}: {exc.strerror}") from None


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


# --- simpul fleet keys -----------------------------------------------------------------------


def add_commands(fleet_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``simpul fleet keys init|rotate|show``."""
    keys = fleet_commands.add_parser(
        "keys",
        help="the root key (offline) and the release keys it certifies",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="make the root key and a certified release key")
    rotate_ = actions.add_parser("rotate", help="certify a new release key, revoke the old one")
    operator = actions.add_parser(
        "operator",
        help="certify a new operator key (signs the control channel), revoke older ones",
        description="Certify a new operator key with the root key: the fleet manager signs"
        " every desired-state document and command it sends to gateways with it, and"
        " gateways apply only what it signed. Older operator keys are revoked.",
    )
    show = actions.add_parser("show", help="kids, roles, validity and revocations")
    for parser in (init, rotate_, operator):
        parser.add_argument(
            "--root-key",
            type=Path,
            required=True,
            metavar="PATH",
            help="the root key file (offline, e.g. on a USB stick); the passphrase is read"
            f" from ${PASSPHRASE_ENV} or asked for",
        )
        parser.add_argument(
            "--valid-days",
            type=int,
            default=DEFAULT_VALID_DAYS,
            help="how long the key's certificate is valid, in days (default: %(default)s)",
        )
    for parser in (init, rotate_, operator, show):
        parser.add_argument(
            "--fleet-dir",
            type=Path,
            default=None,
            help=f"the fleet directory (default: ${FLEET_DIR_ENV}, else"
            " $XDG_DATA_HOME/simpul/fleet)",
        )
        parser.add_argument(
            "--root-pub-out",
            type=Path,
            metavar="FILE",
            help="also write the root public key (PEM) here, for boards and gateways",
        )
    show.add_argument("--json", action="store_true", help="print JSON")
    init.set_defaults(handler=_init_command)
    rotate_.set_defaults(handler=_rotate_command)
    operator.set_defaults(handler=_operator_command)
    show.set_defaults(handler=_show_command)


def _run(args: argparse.Namespace, action: Callable[[Path], int]) -> int:
    fleet_dir = args.fleet_dir or default_fleet_dir()
    try:
        code = action(fleet_dir)
        if args.root_pub_out is not None:
            keyfiles.write_atomic(args.root_pub_out, FleetDir(fleet_dir).root_pub.read_bytes())
            print(f"root public key written to {args.root_pub_out}")
        return code
    except (FleetError, ValueError, OSError) as exc:
        print(f"simpul fleet keys: error: {exc}", file=sys.stderr)
        return 2


def _init_command(args: argparse.Namespace) -> int:
    def action(fleet_dir: Path) -> int:
        passphrase = passphrase_from_env_or_prompt(getpass.getpass, new=True)
        signer = init_fleet(
            fleet_dir, args.root_key, passphrase, now=int(time.time()), valid_days=args.valid_days
        )
        root_kid = cose.key_id(root_public_key(fleet_dir))
        print(f"root key {root_kid.hex()} written to {args.root_key} (encrypted): keep it offline")
        print(f"release key {signer.kid.hex()} certified by it, in {fleet_dir}")
        return 0

    return _run(args, action)


def _rotate_command(args: argparse.Namespace) -> int:
    return _certify_command(args, rotate, "release key {kid} certified; releases are signed"
                            " with it from now")  # fmt: skip


def _operator_command(args: argparse.Namespace) -> int:
    return _certify_command(args, certify_operator, "operator key {kid} certified; the control"
                            " channel is signed with it")  # fmt: skip


def _certify_command(
    args: argparse.Namespace,
    certify: Callable[..., tuple[Signer, RevocationList]],
    said: str,
) -> int:
    """A new key certified with the root key, the older ones of its role revoked."""

    def action(fleet_dir: Path) -> int:
        passphrase = passphrase_from_env_or_prompt(getpass.getpass, new=False)
        signer, listed = certify(
            fleet_dir, args.root_key, passphrase, now=int(time.time()), valid_days=args.valid_days
        )
        print(said.format(kid=signer.kid.hex()))
        revoked = ", ".join(k.hex() for k in listed.revoked) or "none"
        print(f"revocation list {listed.seq} revokes {revoked}")
        return 0

    return _run(args, action)


def _show_command(args: argparse.Namespace) -> int:
    def action(fleet_dir: Path) -> int:
        now = int(time.time())
        found = report(fleet_dir)
        if args.json:
            print(json.dumps(found.as_json(now), indent=2))
            return 0
        print(f"fleet directory  {found.fleet_dir}")
        print(f"root key         {found.root_kid.hex()}  (public key in root.pub)")
        print("certified keys")
        for c in found.certificates:
            validity = f"{iso(c.not_before)} .. {iso(c.not_after)}"
            print(
                f"  {c.kid.hex()}  {c.role}  serial {c.serial}  {validity}  {found.status(c, now)}"
            )
        rev = found.revocations
        revoked = ", ".join(k.hex() for k in rev.revoked) or "none"
        print(f"revocation list  seq {rev.seq}, issued {iso(rev.issued)}, revokes {revoked}")
        print(f"last release seq {found.release_seq}")
        return 0

    return _run(args, action)
