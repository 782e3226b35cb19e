"""Mutual-TLS certificate-bound access tokens (RFC 8705): client certificates as proxies
forward them, and the binding check. Pure functions over values; no I/O."""

from verifier.mtls.binding import check_certificate_binding, thumbprint_bytes, x5t_s256
from verifier.mtls.certificates import (
    CERTIFICATE_ERROR_CODES,
    HEADER_FORMATS,
    CertificateError,
    ClientCertificate,
    certificate_from_der,
    certificate_from_envoy_peer,
    certificate_from_escaped_pem,
    certificate_from_header,
    certificate_from_pem,
    certificate_from_rfc9440,
    certificate_from_traefik,
    certificate_from_xfcc,
    parse_xfcc,
    trusted_by_set,
)
from verifier.mtls.chain import check_chain, load_trust_roots

__all__ = [
    "CERTIFICATE_ERROR_CODES",
    "HEADER_FORMATS",
    "CertificateError",
    "ClientCertificate",
    "certificate_from_der",
    "certificate_from_envoy_peer",
    "certificate_from_escaped_pem",
    "certificate_from_header",
    "certificate_from_pem",
    "certificate_from_rfc9440",
    "certificate_from_traefik",
    "certificate_from_xfcc",
    "check_certificate_binding",
    "check_chain",
    "load_trust_roots",
    "parse_xfcc",
    "thumbprint_bytes",
    "trusted_by_set",
    "x5t_s256",
]
