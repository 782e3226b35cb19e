"""RFC 8705 §3: the check that a certificate-bound access token is used with its certificate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from verifier.mtls.certificates import CertificateError, ClientCertificate

_B64URL_SHA256 = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
"""43 unpadded base64url characters whose last one carries no set unused bits: the only
spelling of 32 bytes (RFC 4648 §3.5)."""


def x5t_s256(der: bytes) -> str:
    """``x5t#S256`` of a certificate (RFC 8705 §3.1): base64url without padding of the
    SHA-256 of its DER."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def thumbprint_bytes(value: object) -> bytes:
    """The 32 bytes a token's ``cnf["x5t#S256"]`` names; raises ``client_certificate_mismatch``
    when it is not a string of exactly 43 canonical base64url characters (no padding, no
    whitespace: RFC 8705 §3.1), since no certificate can match it."""
    if not isinstance(value, str):
        raise CertificateError("client_certificate_mismatch", "cnf x5t#S256 is not a string")
    if not _B64URL_SHA256.fullmatch(value):
        raise CertificateError(
            "client_certificate_mismatch",
            "cnf x5t#S256 is not unpadded base64url of 32 bytes",
        )
    return base64.urlsafe_b64decode(value + "=")


def check_certificate_binding(x5t: object, certificate: ClientCertificate | None) -> None:
    """Pass when ``certificate`` is the one the token's ``cnf["x5t#S256"]`` (``x5t``) names
    (RFC 8705 §3; §3.2 for the top-level ``cnf`` of an introspection answer). Raises
    ``client_certificate_missing`` without a certificate and ``client_certificate_mismatch``
    otherwise; the comparison takes constant time."""
    expected = thumbprint_bytes(x5t)
    if certificate is None:
        raise CertificateError("client_certificate_missing", "no client certificate")
    if not hmac.compare_digest(expected, certificate.sha256):
        raise CertificateError(
            "client_certificate_mismatch",
            "the client certificate is not the one the token is bound to",
        )
