"""The optional CA-chain policy for client certificates (off by default: RFC 8705 §2.2 and §4
bind tokens to self-signed certificates too)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from verifier.mtls.certificates import CACHE_ENTRIES, CertificateError, ClientCertificate

MAX_CHAIN_DEPTH = 4
"""Most intermediates between the leaf and a trusted root."""


def load_trust_roots(pem: bytes) -> Store:
    """A trust store from PEM CA certificates (``ValueError`` when there are none or they do
    not parse: a configuration error, raised at start-up)."""
    roots = x509.load_pem_x509_certificates(pem)
    if not roots:
        raise ValueError("no CA certificate in the trust roots")
    return Store(roots)


def check_chain(certificate: ClientCertificate, roots: Store, now: datetime.datetime) -> None:
    """Pass when the leaf chains to one of ``roots`` through the forwarded intermediates, valid
    at ``now`` with the client-authentication policy of ``cryptography.x509.verification``
    (RFC 5280 path validation, ``clientAuth`` extended key usage). Raises
    ``client_certificate_untrusted`` otherwise, and when only a hash was forwarded.

    A client presents the same certificate on every request: a path once validated is not
    validated again while ``now`` is inside the window in which every certificate of it is
    valid (the roots are fixed for the process; failures are not remembered)."""
    if certificate.der is None:
        raise CertificateError(
            "client_certificate_untrusted",
            "only the certificate's hash was forwarded; the CA-chain policy needs the certificate",
        )
    key = (certificate.der, certificate.chain, roots)  # the Store itself: never a reused id
    window = _windows.get(key)
    if window is None or not window[0] <= now <= window[1]:
        window = _validate(certificate.der, certificate.chain, roots, now)
        if len(_windows) >= CACHE_ENTRIES:
            _windows.clear()  # bounded; refilled by the clients that keep coming
        _windows[key] = window


_Window = tuple[datetime.datetime, datetime.datetime]
_windows: dict[tuple[bytes, tuple[bytes, ...], Store], _Window] = {}
"""Validated paths -> the window in which every certificate of the path is valid."""


def _validate(
    der: bytes, chain: tuple[bytes, ...], roots: Store, now: datetime.datetime
) -> _Window:
    """Validate the path at ``now``; return when all of its certificates are valid."""
    leaf = x509.load_der_x509_certificate(der)
    intermediates = [x509.load_der_x509_certificate(d) for d in chain]
    verifier = (
        PolicyBuilder()
        .store(roots)
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise CertificateError(
            "client_certificate_untrusted",
            f"the client certificate does not chain to a trusted CA: {exc}",
        ) from None
    path = verified.chain
    return (
        max(c.not_valid_before_utc for c in path),
        min(c.not_valid_after_utc for c in path),
    )
