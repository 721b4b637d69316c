"""Key files on disk: the offline root key (passphrase-encrypted), release keys, public keys.

The root key is PKCS#8 PEM, ``ENCRYPTED PRIVATE KEY``: PBES2 with PBKDF2-HMAC-SHA256 over
the passphrase (``ROOT_KDF_ITERATIONS`` rounds, a 16-byte random salt) and AES-256-CBC
(RFC 8018 §6.2, the form ``openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256``
writes). ``cryptography``'s own encryption uses 2048 PBKDF2 rounds, too few for a key that
may be carried on a USB stick and lost, so it is built here; ``openssl pkey`` and
``cryptography`` read it back with the passphrase alone.

Every private key file is created by ``open(O_CREAT | O_EXCL)`` with mode 0600 and written
then synced before it is visible under its name, so it is never readable by others, never
half-written, and never overwrites a key. Key material never appears in messages or reprs;
only kids do.
"""

from __future__ import annotations

import base64
import contextlib
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from fleet.errors import KeyStoreError, PassphraseError
from gateway.codec import cose

#: PBKDF2-HMAC-SHA256 rounds for the root key: OWASP's 2023 figure for that hash.
ROOT_KDF_ITERATIONS: Final = 600_000
#: Shortest passphrase accepted for a new root key.
MIN_PASSPHRASE: Final = 12
PRIVATE_MODE: Final = 0o600
DIR_MODE: Final = 0o700

# DER of the algorithm identifiers (RFC 8018 appendix C, NIST's AES OIDs).
_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")
_OID_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")
_NULL = b"\x05\x00"


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        head = bytes((n,))
    else:
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes((0x80 | len(size),)) + size
    return bytes((tag,)) + head + content


def _seq(*items: bytes) -> bytes:
    return _der(0x30, b"".join(items))


def _octets(data: bytes) -> bytes:
    return _der(0x04, data)


def _integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encrypt_root_key(
    key: Ed25519PrivateKey, passphrase: str, *, iterations: int = ROOT_KDF_ITERATIONS
) -> bytes:
    """``key`` as encrypted PKCS#8 PEM (see the module docstring)."""
    salt, iv = os.urandom(16), os.urandom(16)
    secret = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations
    ).derive(passphrase.encode("utf-8"))
    plain = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    kdf = _seq(
        _OID_PBKDF2,
        _seq(_octets(salt), _integer(iterations), _seq(_OID_HMAC_SHA256, _NULL)),
    )
    scheme = _seq(_OID_AES256_CBC, _octets(iv))
    der = _seq(_seq(_OID_PBES2, _seq(kdf, scheme)), _octets(ciphertext))
    return _pem("ENCRYPTED PRIVATE KEY", der)


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
    return text.encode("ascii")


def create_root_key(path: Path, passphrase: str) -> Ed25519PrivateKey:
    """A new root key, written encrypted to ``path`` (which must not exist)."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise PassphraseError(f"a root key's passphrase needs {MIN_PASSPHRASE} characters or more")
    key = Ed25519PrivateKey.generate()
    write_private(path, encrypt_root_key(key, passphrase))
    return key


def load_root_key(path: Path, passphrase: str) -> Ed25519PrivateKey:
    """The root key in ``path``, decrypted with ``passphrase``."""
    data = read_private(path)
    if b"ENCRYPTED PRIVATE KEY" not in data:
        raise KeyStoreError(f"{path} is not a passphrase-encrypted private key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode("utf-8"))
    except ValueError:
        raise PassphraseError(f"wrong passphrase for the root key in {path}") from None
    except TypeError:
        raise KeyStoreError(f"{path} is not a private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(f"{path} holds no Ed25519 key")
    return key


def write_release_key(path: Path, key: Ed25519PrivateKey) -> None:
    """A release key, written unencrypted (PKCS#8 PEM, mode 0600) to the new file ``path``."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)


def load_release_key(path: Path) -> Ed25519PrivateKey:
    data = read_private(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyStoreError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(f"{path} holds no Ed25519 key")
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The public key as PEM SubjectPublicKeyInfo, as ``openssl pkey -pubout`` writes it."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: Path) -> bytes:
    """The raw 32-byte Ed25519 public key in ``path``: PEM or DER SubjectPublicKeyInfo, 32
    raw bytes, or 64 hex digits."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read public key {path}: {exc.strerror}") from None
    if len(data) == cose.PUBLIC_KEY_BYTES:
        return data
    text = data.strip()
    if len(text) == 2 * cose.PUBLIC_KEY_BYTES:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(text.decode("ascii"))
    try:
        if text.startswith(b"-----BEGIN"):
            public = serialization.load_pem_public_key(data)
        else:
            public = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise KeyStoreError(f"{path} is not a public key (PEM, DER, raw or hex)") from None
    if not isinstance(public, Ed25519PublicKey):
        raise KeyStoreError(f"{path} is not an Ed25519 public key")
    return cose.public_bytes(public)


def write_private(path: Path, data: bytes, mode: int = PRIVATE_MODE) -> None:
    """``data`` into the new file ``path``, mode 0600 (or ``mode``); refuses to replace an
    existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        raise KeyStoreError(f"{path} exists; it is never overwritten") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # exactly this mode whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise KeyStoreError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    fsync_dir(path.parent)


def read_private(path: Path) -> bytes:
    """A private key file's bytes; refuses one that others may read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyStoreError(f"no key file {path}") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fp:
        mode = stat.S_IMODE(os.fstat(fp.fileno()).st_mode)
        if mode & 0o077:
            raise KeyStoreError(
                f"key file {path} is accessible by others (mode {mode:04o}); chmod 600 it"
            )
        return fp.read()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one rename, synced."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise KeyStoreError(f"cannot write {path}: {exc.strerror}") from None
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
