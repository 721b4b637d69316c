"""The gateway's seal key: the X25519 key pair that board keys are sealed to.

Kept beside the batch key (``<state_dir>/keys/seal.key``, raw 32 bytes, mode 0600, in a
0700 directory), created at the first start the same way: written to a temporary file
opened ``O_EXCL`` with mode 0600, then linked to its name, so it is never half-written or
readable by others, and two processes starting at once end up with one key. Its public
part travels in the gateway's signed state (``seal_key``), where the fleet records it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gateway.errors import KeyFileError

FILE_NAME: Final = "seal.key"
_PRIVATE_MODE: Final = 0o600


def seal_key_path(state_dir: Path) -> Path:
    """Where the gateway's seal key lives."""
    return state_dir / "keys" / FILE_NAME


def load_or_create(state_dir: Path) -> X25519PrivateKey:
    """The gateway's seal key, created if there is none; raises :class:`KeyFileError`."""
    path = seal_key_path(state_dir)
    with contextlib.suppress(FileNotFoundError):
        return _load(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = X25519PrivateKey.generate()
        raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_MODE)
        try:
            os.fchmod(fd, _PRIVATE_MODE)
            os.write(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _load(path)
        finally:
            os.unlink(temporary)
    except OSError as exc:
        raise KeyFileError(f"cannot create seal key {path}: {exc.strerror}") from None
    return private


def _load(path: Path) -> X25519PrivateKey:
    try:
        if os.stat(path).st_mode & 0o077:
            raise KeyFileError(f"seal key {path} is readable by others; chmod 600 it")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot read seal key {path}: {exc.strerror}") from None
    if len(raw) != 32:
        raise KeyFileError(f"seal key {path} is not 32 raw bytes")
    return X25519PrivateKey.from_private_bytes(raw)
