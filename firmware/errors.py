"""Errors of the firmware, one class per fault a board can report.

MicroPython allows one native base per class, so these derive from Exception alone.
"""


class SimpulError(Exception):
    pass


class SensorError(SimpulError):
    """A sensor could not give a trustworthy value; ``kind`` names the fault for health."""

    kind = "error"


class SensorTimeout(SensorError):
    kind = "timeout"


class SensorChecksum(SensorError):
    kind = "checksum"


class SensorRange(SensorError):
    kind = "range"


class CborError(SimpulError):
    """Bytes that are not the CBOR this firmware reads."""


class SenmlError(CborError):
    """Well-formed CBOR that is not a SenML pack (RFC 8428), or a reading SenML cannot carry."""


class CoapFormatError(SimpulError):
    """A datagram that is not a well-formed CoAP message."""


class CoapTimeout(SimpulError):
    """A confirmable request got no answer after all retransmissions."""


class CoapRefused(SimpulError):
    """The gateway answered with an error code or a reset."""

    def __init__(self, code, max_age=None):
        super().__init__(code)
        self.code = code
        self.max_age = max_age


class OscoreError(SimpulError):
    """OSCORE (RFC 8613) refused: key material unusable, sequence numbers spent or their
    store unreadable, or a response that is not protected or does not verify."""


class ConfigError(SimpulError):
    """The board's config file is missing a field or has a bad value."""


class SignatureError(SimpulError):
    """Signed data the board refuses; catch this one to refuse whatever the reason."""


class BadSignature(SignatureError):
    """An Ed25519 signature (RFC 8032) that does not verify, or a key or signature that is not
    a valid encoding; the message names the check that refused it."""


class CoseError(SignatureError):
    """A COSE_Sign1 (RFC 9052) refused before its signature is checked."""


class CoseTagError(CoseError):
    """The CBOR item is not tagged 18 (COSE_Sign1)."""


class CoseAlgorithmError(CoseError):
    """The protected header does not name EdDSA (-8), the one algorithm the board verifies."""


class CoseFormatError(CoseError):
    """Not CBOR, or CBOR that is not a well-formed COSE_Sign1 with the headers it needs."""


class ReleaseRefused(SimpulError):
    """A release the board will not install; ``reason`` names why in its health report.
    fleet/errors.py has the same classes with the same reasons, for the host's checks."""

    reason = "refused"


class BadManifest(ReleaseRefused):
    """A manifest, certificate or revocation list that is not well formed."""

    reason = "malformed"


class BadCertificate(ReleaseRefused):
    """The release key's certificate is not signed by the root, or not for role "release"."""

    reason = "certificate"


class CertificateExpired(BadCertificate):
    """The certificate is not valid at the board's time."""

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
    """The release's sequence number is not above the installed one (replay or rollback)."""

    reason = "stale"


class WrongHardware(ReleaseRefused):
    """The release is for another hardware class."""

    reason = "hardware"


class BootTooOld(ReleaseRefused):
    """The release needs a newer boot part than this board's (OTA never replaces it)."""

    reason = "boot_version"


class TooLarge(ReleaseRefused):
    """The release's files together exceed the free space."""

    reason = "too_large"


class UnlistedFile(ReleaseRefused):
    """A file the manifest does not list."""

    reason = "unlisted_file"


class FileTooLarge(ReleaseRefused):
    """More bytes of a file than the manifest declares."""

    reason = "file_too_large"


class FileMismatch(ReleaseRefused):
    """A file whose size or SHA-256 is not the manifest's."""

    reason = "file_digest"
