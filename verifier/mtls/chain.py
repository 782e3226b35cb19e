"""The optional CA-chain policy for client certificates (off by default: RFC 8705 §2.2 and §4
bind tokens to self-signed certificates too)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from verifier.mtls.certificates import CertificateError, ClientCertificate

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
    ``client_certificate_untrusted`` otherwise, and when only a hash was forwarded."""
    if certificate.der is None:
        raise CertificateError(
            "client_certificate_untrusted",
            "only the certificate's hash was forwarded; the CA-chain policy needs the certificate",
        )
    leaf = x509.load_der_x509_certificate(certificate.der)
    intermediates = [x509.load_der_x509_certificate(der) for der in certificate.chain]
    verifier = (
        PolicyBuilder()
        .store(roots)
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise CertificateError(
            "client_certificate_untrusted",
            f"the client certificate does not chain to a trusted CA: {exc}",
        ) from None
