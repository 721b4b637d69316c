"""The gateway's signing identity: an Ed25519 key kept in its state directory.

Layout under ``<state_dir>/keys/`` (directory mode 0700)::

    gateway.key            the private key that signs batches now (PKCS#8 PEM, mode 0600)
    gateway.pub            its public key (SubjectPublicKeyInfo PEM), for consumers
    next.key               during a rotation: the key announced to sign after the current one
    retired/<kid>.key      keys rotated out, kept for the record (mode 0600)

A private key file is created with mode 0600 by ``open(O_CREAT | O_EXCL)`` and only then
written, and reaches its final name by ``link``/``rename``, so it is never readable by others,
never half-written, and two processes starting at once end up with the same key. Key
material never appears in logs or reprs; only the ``kid`` (first 8 bytes of the SHA-256 of
the raw public key) does.

Rotation: :meth:`GatewayIdentity.begin_rotation` creates ``next.key``; the next batch
announces its public key (``next_key``), signed by the current key; once that batch is part of
the chain (its :class:`~gateway.batches.format.ChainState` says ``announced``),
:meth:`GatewayIdentity.signer_for` retires the old key and signs with the new one. Each
step is a rename, so a crash in between resumes where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from gateway.batches.format import ChainState, key_id, public_bytes
from gateway.errors import GatewayError, KeyFileError

KEY_DIR = "keys"
CURRENT_KEY = "gateway.key"
CURRENT_PUBLIC = "gateway.pub"
NEXT_KEY = "next.key"
RETIRED_DIR = "retired"

_PRIVATE_MODE = 0o600
_DIR_MODE = 0o700


@dataclass(frozen=True, repr=False)
class SigningKey:
    """An Ed25519 private key with its raw public key and kid."""

    private: Ed25519PrivateKey
    #: Raw 32-byte public key.
    public: bytes
    kid: bytes

    @classmethod
    def of(cls, private: Ed25519PrivateKey) -> SigningKey:
        public = public_bytes(private)
        return cls(private=private, public=public, kid=key_id(public))

    def public_pem(self) -> bytes:
        """The public key as PEM SubjectPublicKeyInfo, as ``openssl pkey -pubout`` writes it."""
        return self.private.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid.hex()})"


class GatewayIdentity:
    """The keys in one state directory; load it with :func:`load_or_create` or :func:`load`."""

    def __init__(self, key_dir: Path, current: SigningKey, pending: SigningKey | None) -> None:
        self.key_dir = key_dir
        self.current = current
        self.pending = pending

    def __repr__(self) -> str:
        pending = self.pending.kid.hex() if self.pending else None
        return f"GatewayIdentity({str(self.key_dir)!r}, kid={self.kid.hex()}, next={pending})"

    @property
    def kid(self) -> bytes:
        return self.current.kid

    def public_pem(self) -> bytes:
        return self.current.public_pem()

    def begin_rotation(self) -> SigningKey:
        """Create the next key (once); the next batch announces it. Returns it."""
        if self.pending is None:
            self.pending = _load_or_create_key(self.key_dir / NEXT_KEY)
        return self.pending

    def signer_for(self, chain: ChainState) -> tuple[Ed25519PrivateKey, bytes | None]:
        """The key to sign the batch after ``chain`` with, and the key it must announce.

        If ``chain``'s last batch announced the pending key, the rotation completes first, so
        the old key signs nothing after its announcement. Picks up a rotation begun by another
        process (``simpul gateway key --rotate``).
        """
        if self.pending is None and (self.key_dir / NEXT_KEY).exists():
            self.pending = _load_key(self.key_dir / NEXT_KEY)
        if self.pending is not None and chain.announced == self.pending.public:
            self.complete_rotation()
        if self.pending is not None:
            return self.current.private, self.pending.public
        return self.current.private, None

    def complete_rotation(self) -> None:
        """Retire the current key and make the pending one current."""
        if self.pending is None:
            raise KeyFileError("no key rotation in progress")
        retired = self.key_dir / RETIRED_DIR
        _make_dir(retired)
        kept = retired / f"{self.current.kid.hex()}.key"
        with contextlib.suppress(FileExistsError):  # a retry after a crash
            os.link(self.key_dir / CURRENT_KEY, kept)
        os.replace(self.key_dir / NEXT_KEY, self.key_dir / CURRENT_KEY)
        _fsync_dir(self.key_dir)
        self.current, self.pending = self.pending, None
        _write_public(self.key_dir, self.current)


def load_or_create(state_dir: Path) -> GatewayIdentity:
    """The gateway's identity in ``state_dir``, generating its key on first start."""
    key_dir = state_dir / KEY_DIR
    _make_dir(key_dir)
    current = _load_or_create_key(key_dir / CURRENT_KEY)
    return _identity(key_dir, current)


def load(state_dir: Path) -> GatewayIdentity:
    """The gateway's identity in ``state_dir``; :class:`KeyFileError` if it has none."""
    key_dir = state_dir / KEY_DIR
    try:
        current = _load_key(key_dir / CURRENT_KEY)
    except FileNotFoundError:
        raise KeyFileError(
            f"no gateway key in {key_dir}: is the state directory right? A gateway makes its"
            " key on first start; 'simpul gateway key --init' makes it now"
        ) from None
    return _identity(key_dir, current)


def _identity(key_dir: Path, current: SigningKey) -> GatewayIdentity:
    pending_path = key_dir / NEXT_KEY
    pending = _load_key(pending_path) if pending_path.exists() else None
    # Rewritten every time: a crash mid-rotation may have left the old one.
    _write_public(key_dir, current)
    return GatewayIdentity(key_dir, current, pending)


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create key directory {path}: {exc.strerror}") from None


def _load_or_create_key(path: Path) -> SigningKey:
    try:
        return _load_key(path)
    except FileNotFoundError:
        pass
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_MODE)
        try:
            os.fchmod(fd, _PRIVATE_MODE)  # exactly 0600 whatever the umask
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)  # fails if another process made one meanwhile
        except FileExistsError:
            return _load_key(path)
        finally:
            os.unlink(temporary)
        _fsync_dir(path.parent)
    except KeyFileError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {path}: {exc.strerror}") from None
    return SigningKey.of(private)


def _load_key(path: Path) -> SigningKey:
    """Raises FileNotFoundError (itself) when absent; :class:`KeyFileError` when unusable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fp:
        mode = stat.S_IMODE(os.fstat(fp.fileno()).st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file {path} is accessible by others (mode {mode:04o}); chmod 600 it"
            )
        data = fp.read()
    try:
        private = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"key file {path} is not an unencrypted PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds no Ed25519 key")
    return SigningKey.of(private)


def _write_public(key_dir: Path, key: SigningKey) -> None:
    path = key_dir / CURRENT_PUBLIC
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(key.public_pem())
        os.replace(temporary, path)
    except OSError as exc:
        raise KeyFileError(f"cannot write public key {path}: {exc.strerror}") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ``simpul gateway key``: wired into gateway/cli.py through these two functions.


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``simpul gateway key``; the handler is :func:`key_command`."""
    parser.add_argument("--config", type=Path, help="TOML file with a [gateway] table")
    parser.add_argument("--state-dir", type=Path, help="the gateway's state directory")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--init",
        action="store_true",
        help="create the key if the state directory has none (the gateway also does on its"
        " first start), then print its public key",
    )
    what.add_argument(
        "--public",
        action="store_true",
        help="print the public key (PEM SubjectPublicKeyInfo) for consumers' key sets",
    )
    what.add_argument("--kid", action="store_true", help="print the key id (hex)")
    what.add_argument(
        "--rotate",
        action="store_true",
        help="create the next key; the next batch announces it, signed by the current key",
    )
    parser.set_defaults(handler=key_command)


def key_command(args: argparse.Namespace) -> int:
    """Handler of ``simpul gateway key``; returns the exit code.

    Only ``--init`` creates a key: reading one (``--public``, ``--kid``) from a mistyped
    state directory must say so, not quietly make a new key that signs nothing.
    """
    from gateway.config import load_config

    try:
        config = load_config(args.config, overrides={"state_dir": args.state_dir})
        identity = load_or_create(config.state_dir) if args.init else load(config.state_dir)
        if args.rotate:
            pending = identity.begin_rotation()
            sys.stdout.buffer.write(pending.public_pem())
            print(
                f"simpul gateway: key {pending.kid.hex()} will be announced by the next batch,"
                f" signed by key {identity.kid.hex()}",
                file=sys.stderr,
            )
        elif args.kid:
            print(identity.kid.hex())
        else:
            sys.stdout.buffer.write(identity.public_pem())
        sys.stdout.flush()
    except GatewayError as exc:
        print(f"simpul gateway: error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "GatewayIdentity",
    "SigningKey",
    "add_key_arguments",
    "key_command",
    "load",
    "load_or_create",
]
