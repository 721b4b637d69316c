"""Board key material for OSCORE, and the files that carry it: a pure codec.

A board and its gateway share, per board (RFC 8613 §3, AES-CCM-16-64-128, HKDF-SHA-256, no
ID Context): a 32-byte Master Secret, a Master Salt (may be empty), the board's Sender ID
``sid`` (unique among one gateway's boards, at most 7 bytes) and the gateway's Sender ID
``rid``, which is always empty. As JSON, every byte string in hex::

    board file   {"sid": "01", "rid": "", "secret": "<64 hex>", "salt": ""}
    keys file    {"board_id": "aq-0001", "sid": ..., "rid": ..., "secret": ..., "salt": ...}
                 or a list of such objects (a gateway's enrolment file)

No files, sockets or clocks here; :func:`generate` takes its randomness from ``os.urandom``
unless given bytes. A secret never appears in a repr.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.codec.senml import is_board_id
from gateway.errors import BadBoardKeys

SECRET_BYTES: Final = 32
#: AES-CCM-16-64-128's nonce is 13 bytes, so a Sender ID has at most 13 - 6 bytes.
MAX_ID_BYTES: Final = 7
MAX_SALT_BYTES: Final = 64
_FIELDS: Final = frozenset({"sid", "rid", "secret", "salt"})


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """One board's OSCORE key material (the gateway's view: it receives with ``sid``)."""

    sid: bytes
    secret: bytes = field(repr=False)
    salt: bytes = b""
    rid: bytes = b""

    def __post_init__(self) -> None:
        if not 0 < len(self.sid) <= MAX_ID_BYTES:
            raise BadBoardKeys(f"sid must be 1 to {MAX_ID_BYTES} bytes, got {len(self.sid)}")
        if self.rid != b"":
            raise BadBoardKeys("rid (the gateway's Sender ID) must be empty")
        if len(self.secret) != SECRET_BYTES:
            raise BadBoardKeys(f"secret must be {SECRET_BYTES} bytes, got {len(self.secret)}")
        if len(self.salt) > MAX_SALT_BYTES:
            raise BadBoardKeys(f"salt must be at most {MAX_SALT_BYTES} bytes")

    @property
    def fingerprint(self) -> str:
        """16 hex digits that name this material (not secret: a hash of all of it)."""
        digest = hashlib.sha256(b"simpul-oscore-key\0" + self.sid + b"\0" + self.salt)
        digest.update(self.secret)
        return digest.hexdigest()[:16]

    def to_json(self) -> dict[str, str]:
        """The board file's object."""
        return {
            "sid": self.sid.hex(),
            "rid": self.rid.hex(),
            "secret": self.secret.hex(),
            "salt": self.salt.hex(),
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> KeyMaterial:
        """From a board file's object (extra keys refused); raises :class:`BadBoardKeys`."""
        if set(body) != _FIELDS:
            raise BadBoardKeys(f"key material needs exactly {', '.join(sorted(_FIELDS))}")
        return cls(
            sid=_hex(body, "sid"),
            rid=_hex(body, "rid"),
            secret=_hex(body, "secret"),
            salt=_hex(body, "salt"),
        )


@dataclass(frozen=True, slots=True)
class BoardKey:
    """A board and its key material."""

    board_id: str
    material: KeyMaterial

    def __post_init__(self) -> None:
        if not is_board_id(self.board_id):
            raise BadBoardKeys(f"not a board id: {self.board_id!r}")

    def to_json(self) -> dict[str, str]:
        """The keys file's object for this board."""
        return {"board_id": self.board_id, **self.material.to_json()}


def generate(board_id: str, sid: bytes, *, secret: bytes | None = None) -> BoardKey:
    """New key material for ``board_id`` (a fresh secret, an empty salt)."""
    return BoardKey(board_id, KeyMaterial(sid=sid, secret=secret or os.urandom(SECRET_BYTES)))


def aiocoap_settings(material: KeyMaterial, *, side: Literal["board", "gateway"]) -> dict[str, str]:
    """aiocoap's ``settings.json`` (``FilesystemSecurityContext``) for one side of
    ``material``: the board sends with ``sid``, the gateway with ``rid``."""
    sender, recipient = (
        (material.sid, material.rid) if side == "board" else (material.rid, material.sid)
    )
    return {
        "sender-id_hex": sender.hex(),
        "recipient-id_hex": recipient.hex(),
        "secret_hex": material.secret.hex(),
        "salt_hex": material.salt.hex(),
    }


def encode_board_file(material: KeyMaterial) -> bytes:
    """The board's own key file (what provisioning writes to the board)."""
    return json.dumps(material.to_json(), indent=1).encode() + b"\n"


def encode_keys_file(keys: list[BoardKey]) -> bytes:
    """A keys file holding ``keys``."""
    return json.dumps([k.to_json() for k in keys], indent=1).encode() + b"\n"


def decode_keys_file(data: bytes) -> list[BoardKey]:
    """The boards of a keys file (one object or a list); raises :class:`BadBoardKeys`.

    Two entries for one board, or one ``sid`` for two boards, are refused: a gateway finds
    a board by its ``sid``.
    """
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBoardKeys(f"keys file is not JSON: {exc}") from None
    entries = body if isinstance(body, list) else [body]
    keys: list[BoardKey] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("board_id"), str):
            raise BadBoardKeys("each keys file entry is an object with a board_id")
        rest = {k: v for k, v in entry.items() if k != "board_id"}
        keys.append(BoardKey(entry["board_id"], KeyMaterial.from_json(rest)))
    check_unique(keys)
    return keys


def check_unique(keys: list[BoardKey]) -> None:
    """Raise :class:`BadBoardKeys` if a board or a ``sid`` appears twice."""
    boards = [k.board_id for k in keys]
    sids = [k.material.sid for k in keys]
    if len(set(boards)) != len(boards):
        raise BadBoardKeys("a board appears twice")
    if len(set(sids)) != len(sids):
        raise BadBoardKeys("two boards share a sid")


def _hex(body: Mapping[str, Any], name: str) -> bytes:
    value = body[name]
    if not isinstance(value, str):
        raise BadBoardKeys(f"{name} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BadBoardKeys(f"{name} is not hex") from None
