"""The gateway's OSCORE security contexts: one per enrolled board, persisted in its state dir.

Built on aiocoap's server side: :class:`BoardContext` is aiocoap's
``FilesystemSecurityContext`` (the gateway's Sender ID empty, the board's ``sid`` as
Recipient ID and kid), so it inherits RFC 8613 Appendix B.1 from it:

* **Sender sequence numbers in steps** (B.1.1): aiocoap persists a number ahead of the one in
  use (the step doubling from 10 to 10,000) and fsyncs it before using the numbers below it,
  so a crash skips numbers but never reuses a nonce.
* **Replay window recovery with Echo** (B.1.2): at a request's first strike-out aiocoap
  writes the window as ``unknown``; only a clean stop writes it back. After a crash the
  first request of each board gets a protected 4.01 with an Echo option, and only the
  board's next request, repeating it, initialises the window (then it is fresh for sure).

**A restored or copied state dir** would bring back older sequence numbers (a reused nonce)
and an older replay window (replays accepted). The directory is bound to itself: the file
``<state_dir>/instance`` holds a random instance id, and ``oscore/binding.json`` records it
with that file's inode and change time. A copy, ``tar`` or ``rsync`` restore makes a new
inode and change time, which no copy can carry over. On a mismatch (or contexts without a
binding) every context is **reinitialised**, never refused: its sender sequence number jumps
:data:`RESTORE_JUMP` ahead (the gateway spends its own numbers only on Echo challenges, a
few per board and restart) and its replay window is forgotten, so every board goes through
Echo again. It is logged, and shown in the health (``security.restored``).

**Key rotation**: a board's new key material gets a new context; the old one is kept as the
new one's :attr:`BoardContext.previous` and answers requests the new one cannot open
(readings the board buffered and sends under the old key) until the first request under the
new key succeeds; then the old context is *retired*: its directory marked, never loaded
again (a key once used must never restart at sequence number 0). Meanwhile every 2.04 to a
request the old key opened hands the new material over (:meth:`BoardContext.handover`,
carried by ``gateway.intake.resources``): inside the response, protected under the old key,
so only the board reads it; a lost response is no loss, as the board's next request under
the old key gets it again. A rotation carried over the old key keeps the new one only as
secret as the old one was: a board whose key leaked is provisioned again over its cable.

Refusals are counted by reason in :attr:`Contexts.refused`: ``unknown_kid``, ``bad_mac``
(wrong key or altered message), ``bad_cose`` (no parseable OSCORE option), ``replayed``,
``echo_challenge`` (the B.1.2 4.01), ``board_mismatch`` (counted by the resources) and
``not_protected`` (plain CoAP without the lab flag).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from aiocoap import error as coap_error
from aiocoap import oscore
from aiocoap.credentials import CredentialsMap

from gateway.oscore.keys import KeyMaterial, aiocoap_settings
from gateway.store.board_keys import StoredKey

log = logging.getLogger(__name__)

#: How far a reinitialised context's sender sequence number jumps (of 2**40).
RESTORE_JUMP: Final = 1 << 30
INSTANCE_FILE: Final = "instance"
BINDING_FILE: Final = "binding.json"
RETIRED_FILE: Final = "retired"
_SECRET_FILE: Final = "secret.json"


class BoardContext(oscore.FilesystemSecurityContext):  # type: ignore[misc]
    """aiocoap's persisted security context for one board, counting what it refuses."""

    def __init__(self, basedir: Path, board_id: str, refused: Counter[str]) -> None:
        super().__init__(str(basedir))
        self.board_id = board_id
        self.refused = refused
        #: The context of the board's key before a rotation, until the new one is used.
        self.previous: BoardContext | None = None
        #: This context's key material (set by :func:`open_context`; the board learns it
        #: from :meth:`handover` while it still uses :attr:`previous`).
        self.material: KeyMaterial | None = None
        self._answering: BoardContext = self

    @property
    def directory(self) -> Path:
        return Path(self.basedir)

    def reinitialise(self) -> None:
        """After a restore: jump the sender sequence number, forget the replay window."""
        self.sender_sequence_number += RESTORE_JUMP
        self.sequence_number_persisted = self.sender_sequence_number
        window: Any = getattr(self, "recipient_replay_window")  # noqa: B009 (mypy)
        self.recipient_replay_window = oscore.ReplayWindow(
            window._size, self._replay_window_changed
        )
        self.replay_window_persisted = False
        self._store()

    def unprotect(self, protected_message: Any, request_id: Any = None) -> Any:
        try:
            result = super().unprotect(protected_message, request_id)
        except oscore.ReplayErrorWithEcho:
            self.refused["echo_challenge"] += 1
            raise
        except oscore.ReplayError:
            self.refused["replayed"] += 1
            raise
        except oscore.DecodeError:
            self.refused["bad_cose"] += 1
            raise coap_error.Unauthorized("OSCORE message not understood") from None
        except oscore.ProtectionInvalid:
            previous = self.previous
            if previous is None or request_id is not None:
                self.refused["bad_mac"] += 1
                raise coap_error.Unauthorized("not protected with this board's key") from None
            result = previous.unprotect(protected_message, request_id)
            # aiocoap's site wrapper asks for the response context right after this
            # returns, with no await between: answer under the key the board used.
            self._answering = previous
            return result
        except Exception:  # aiocoap 0.4.17 raises AttributeError for a Group OSCORE flag
            self.refused["bad_cose"] += 1
            raise coap_error.Unauthorized("OSCORE message not understood") from None
        self._answering = self
        if self.previous is not None:
            self.previous.retire()
            self.previous = None
        return result

    def context_for_response(self) -> Any:
        return self._answering

    def handover(self) -> KeyMaterial | None:
        """The key material the board has yet to learn: this context's while the board has
        not used it, else None.

        While :attr:`previous` is set, every request this context passed on was opened by
        the previous one: the first one this context opens itself clears it, in
        :meth:`unprotect`, before the request reaches a resource. So a resource that finds
        material here answers a request protected under the old key, and its answer is
        protected under that key too (:meth:`context_for_response`).
        """
        return self.material if self.previous is not None else None

    def retire(self) -> None:
        """Never use this context again (its board uses a newer key); persist and release."""
        log.info("board %s: retiring its previous OSCORE key", self.board_id)
        (self.directory / RETIRED_FILE).write_text("retired\n")
        self.close()

    def close(self) -> None:
        """Persist the sequence number in use and the replay window; release the lock."""
        if self.lockfile is not None:
            self._destroy()


def context_dir(root: Path, material: KeyMaterial) -> Path:
    """Where the context of ``material`` is kept: one directory per sid and key."""
    return root / material.sid.hex() / material.fingerprint


def open_context(
    root: Path, board_id: str, material: KeyMaterial, refused: Counter[str]
) -> BoardContext | None:
    """The persisted context of ``material`` (created if new); None if it was retired."""
    directory = context_dir(root, material)
    if (directory / RETIRED_FILE).exists():
        return None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = directory / _SECRET_FILE
    if not secret.exists():
        body = aiocoap_settings(material, side="gateway")
        temporary = directory / f".{_SECRET_FILE}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fp:
            json.dump(body, fp)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temporary, secret)
    context = BoardContext(directory, board_id, refused)
    context.material = material
    return context


class StateBinding:
    """Whether the OSCORE state in a state dir is the one this state dir wrote.

    See the module's docstring: the instance file's inode and change time, recorded beside
    a random instance id, cannot be carried by a copy.
    """

    def __init__(self, state_dir: Path) -> None:
        self.instance_path = state_dir / INSTANCE_FILE
        self.binding_path = state_dir / "oscore" / BINDING_FILE
        self.instance = ""

    def check(self, *, had_state: bool) -> bool:
        """True if the state was restored or copied (or has contexts, ``had_state``, but
        no binding); records the binding either way, so it says so once."""
        if not self.instance_path.exists():
            self._write_instance()
        self.instance = self.instance_path.read_text().strip()
        stat = os.stat(self.instance_path)
        now = {"instance": self.instance, "ino": stat.st_ino, "ctime_ns": stat.st_ctime_ns}
        try:
            recorded = json.loads(self.binding_path.read_text())
        except (OSError, ValueError):
            recorded = None
        restored = recorded != now if recorded is not None else had_state
        if recorded != now:
            self.binding_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = self.binding_path.with_suffix(".tmp")
            temporary.write_text(json.dumps(now))
            with open(temporary, "rb") as fp:
                os.fsync(fp.fileno())
            os.replace(temporary, self.binding_path)
        return restored

    def _write_instance(self) -> None:
        temporary = self.instance_path.with_suffix(".tmp")
        temporary.write_text(secrets.token_hex(16) + "\n")
        os.replace(temporary, self.instance_path)


class BoardCredentials(CredentialsMap):  # type: ignore[misc]
    """aiocoap's credentials map, looked up by kid: one context per enrolled board."""

    def __init__(self, refused: Counter[str]) -> None:
        super().__init__()
        self.by_kid: dict[bytes, BoardContext] = {}
        self.refused = refused

    def find_oscore(self, unprotected: Any) -> BoardContext:
        kid = unprotected.get(oscore.COSE_KID)
        context = self.by_kid.get(kid) if isinstance(kid, bytes) else None
        if context is None or unprotected.get(oscore.COSE_KID_CONTEXT) is not None:
            self.refused["unknown_kid"] += 1
            raise KeyError("no enrolled board has this kid")
        return context

    def find_all_used_contextless_oscore_kid(self) -> set[bytes]:
        return set(self.by_kid)


#: The refusal reasons of the OSCORE layer (shown together in the gateway's health).
REASONS: Final = (
    "not_protected",
    "unknown_kid",
    "bad_mac",
    "bad_cose",
    "replayed",
    "echo_challenge",
    "board_mismatch",
)


class Contexts:
    """Every enrolled board's context, kept in step with the ``board_keys`` table."""

    def __init__(self, state_dir: Path, refused: Counter[str] | None = None) -> None:
        self.root = state_dir / "oscore"
        self.binding = StateBinding(state_dir)
        #: Refusals by reason (the gateway's own refusal counter, shared).
        self.refused: Counter[str] = refused if refused is not None else Counter()
        self.credentials = BoardCredentials(self.refused)
        #: Whether this start found a restored or copied state dir (contexts reinitialised).
        self.restored = False
        self._by_board: dict[str, BoardContext] = {}

    def start(self, keys: Iterable[StoredKey]) -> None:
        """Check the state dir's binding, then open the enrolled boards' contexts."""
        keys = list(keys)
        had_state = any(self.root.glob("*/*/secret.json"))
        self.restored = self.binding.check(had_state=had_state)
        if self.restored:
            log.warning(
                "the OSCORE state in %s was restored or copied: every board's context is"
                " reinitialised (sequence numbers jump ahead, boards answer an Echo)",
                self.root,
            )
            for secret in self.root.glob("*/*/secret.json"):
                if not (secret.parent / RETIRED_FILE).exists():
                    context = BoardContext(secret.parent, "?", self.refused)
                    context.reinitialise()
                    context.close()
        self.sync(keys)

    @property
    def boards(self) -> int:
        return len(self._by_board)

    @property
    def rotating(self) -> int:
        """Boards holding a new key they have not used yet (each is handed it, see
        :meth:`BoardContext.handover`)."""
        return sum(1 for c in self._by_board.values() if c.previous is not None)

    def board_for(self, context: Any) -> str | None:
        """The board a request's security context belongs to."""
        board: str | None = getattr(context, "board_id", None)
        return board

    def sync(self, keys: Iterable[StoredKey]) -> None:
        """Open contexts for new or re-keyed boards, close those of unenrolled ones."""
        wanted = {key.board_id: key for key in keys}
        for board_id in list(self._by_board):
            if board_id not in wanted:
                self._drop(board_id)
        for board_id, key in wanted.items():
            current = self._by_board.get(board_id)
            if current is not None and current.directory == context_dir(self.root, key.material):
                continue
            context = open_context(self.root, board_id, key.material, self.refused)
            if context is None:
                log.warning("board %s: its key was retired; enrol a new one", board_id)
                if current is not None:
                    self._drop(board_id)
                continue
            if current is not None and key.previous is not None:
                if current.directory == context_dir(self.root, key.previous):
                    context.previous = current
                else:
                    current.close()
            elif key.previous is not None:
                context.previous = open_context(self.root, board_id, key.previous, self.refused)
            elif current is not None:
                current.close()
            if current is not None:
                self.credentials.by_kid.pop(current.recipient_id, None)
            self._by_board[board_id] = context
            self.credentials.by_kid[context.recipient_id] = context

    def _drop(self, board_id: str) -> None:
        context = self._by_board.pop(board_id)
        self.credentials.by_kid.pop(context.recipient_id, None)
        if context.previous is not None:
            context.previous.close()
        context.close()

    def close(self) -> None:
        """Persist every context (a clean stop needs no Echo round at the next start)."""
        for board_id in list(self._by_board):
            self._drop(board_id)
