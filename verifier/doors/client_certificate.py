"""Where each front door finds the client certificate (RFC 8705), and the FAPI interaction id.

* ``Check`` (Envoy ext_authz), per ``DPOP_EXTAUTHZ_CLIENT_CERT``: ``peer`` reads
  ``attributes.source.certificate`` (URL-encoded PEM; Envoy sends it with
  ``include_peer_certificate: true``), ``xfcc`` the ``x-forwarded-client-cert`` element added by a
  proxy whose ``By=`` is in ``DPOP_XFCC_TRUSTED_BY``, ``none`` nothing.
* forward auth: the header ``DPOP_HTTP_CLIENT_CERT_HEADER`` in the format
  ``DPOP_HTTP_CLIENT_CERT_FORMAT``; it is read only from a trusted proxy (the listener refuses
  any other caller before reading a header).
* ``Verify``: the request's ``client_certificate`` (DER).

What arrived becomes a :class:`~verifier.domain.model.ClientCertificateFacts`: the leaf's SHA-256,
or the reason nothing usable arrived. The engine needs it only for a certificate-bound token.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.x509.verification import Store

from verifier.domain.model import ClientCertificateFacts, Policy, Profile
from verifier.domain.reasons import Reason
from verifier.mtls import (
    HEADER_FORMATS,
    CertificateError,
    ClientCertificate,
    certificate_from_der,
    certificate_from_envoy_peer,
    certificate_from_header,
    certificate_from_xfcc,
)
from verifier.mtls.chain import check_chain

EXTAUTHZ_SOURCES = ("peer", "xfcc", "none")
"""The values of ``DPOP_EXTAUTHZ_CLIENT_CERT``."""
XFCC_HEADER = "x-forwarded-client-cert"
FAPI_INTERACTION_ID = "x-fapi-interaction-id"
_INTERACTION_ID = re.compile(r"[A-Za-z0-9._~+/=:-]{1,128}")
"""An interaction id echoed as received: a UUID in practice; anything header-safe and short."""


@dataclass(frozen=True, slots=True)
class ClientCertificateOptions:
    """Where the front doors read the client certificate."""

    extauthz_source: str = "peer"
    """``peer`` | ``xfcc`` | ``none`` (``DPOP_EXTAUTHZ_CLIENT_CERT``)."""
    xfcc_trusted_by: frozenset[str] = field(default_factory=frozenset)
    """The ``By=`` URIs of the proxies whose XFCC element is believed."""
    http_header: str = ""
    """The forward-auth header carrying the certificate (lower case; empty: none is read)."""
    http_format: str = "escaped-pem"
    """The header's format, one of :data:`~verifier.mtls.HEADER_FORMATS`."""
    trust_roots: Store | None = None
    """With ``DPOP_CLIENT_CERT_CA_FILE``: the CAs a certificate must chain to (else any binds)."""

    def __post_init__(self) -> None:
        if self.extauthz_source not in EXTAUTHZ_SOURCES:
            raise ValueError(f"client certificate source must be one of {EXTAUTHZ_SOURCES}")
        if self.http_format not in HEADER_FORMATS:
            raise ValueError(f"client certificate header format must be one of {HEADER_FORMATS}")
        object.__setattr__(self, "http_header", self.http_header.strip().lower())


def certificate_facts(
    decode: Callable[[], ClientCertificate], roots: Store | None = None
) -> ClientCertificateFacts:
    """What ``decode`` yields, or the reason it yields nothing usable; with ``roots``, a
    certificate that does not chain to one of them is ``client_certificate_untrusted``."""
    try:
        certificate = decode()
        if roots is not None:
            check_chain(certificate, roots, datetime.datetime.now(datetime.UTC))
        return ClientCertificateFacts(sha256=certificate.sha256)
    except CertificateError as exc:
        return ClientCertificateFacts(problem=Reason(exc.code), detail=str(exc))


def extauthz_certificate(
    peer_certificate: str,
    headers: Mapping[str, tuple[str, ...]],
    options: ClientCertificateOptions,
) -> ClientCertificateFacts | None:
    """The client certificate of a ``CheckRequest`` (None: ``none`` is configured)."""
    if options.extauthz_source == "peer":
        return certificate_facts(
            lambda: certificate_from_envoy_peer(peer_certificate), options.trust_roots
        )
    if options.extauthz_source == "xfcc":
        values = headers.get(XFCC_HEADER, ())
        joined = ",".join(values)  # each hop appends an element; Envoy joins repeated lines
        trusted_by = options.xfcc_trusted_by
        return certificate_facts(
            lambda: certificate_from_xfcc(joined, trusted_by), options.trust_roots
        )
    return None


def forward_auth_certificate(
    headers: Mapping[str, tuple[str, ...]], options: ClientCertificateOptions
) -> ClientCertificateFacts | None:
    """The client certificate a trusted gateway forwarded (None: no header is configured).
    Two values of the header are refused as ``client_certificate_invalid``."""
    if not options.http_header:
        return None
    values = headers.get(options.http_header)
    if values is not None and len(values) > 1:
        return ClientCertificateFacts(
            problem=Reason.CLIENT_CERTIFICATE_INVALID, detail="more than one certificate header"
        )
    value = values[0] if values else None
    return certificate_facts(
        lambda: certificate_from_header(value, options.http_format), options.trust_roots
    )


def verify_certificate(der: bytes, roots: Store | None = None) -> ClientCertificateFacts:
    """The ``client_certificate`` of a ``VerifyRequest`` (empty: the client sent none)."""
    if not der:
        return ClientCertificateFacts(
            problem=Reason.CLIENT_CERTIFICATE_MISSING, detail="no client_certificate"
        )
    return certificate_facts(lambda: certificate_from_der(der), roots)


def fapi_interaction_id(headers: Mapping[str, tuple[str, ...]], policy: Policy) -> str:
    """On a ``fapi2`` route: the client's ``x-fapi-interaction-id`` when it is one short,
    header-safe value, else a fresh RFC 4122 UUID (FAPI 1.0 Part 1 §6.2.1 items 11, 12);
    elsewhere empty."""
    if policy.profile is not Profile.FAPI2:
        return ""
    values = headers.get(FAPI_INTERACTION_ID, ())
    if len(values) == 1 and _INTERACTION_ID.fullmatch(values[0].strip()):
        return values[0].strip()
    return str(uuid.uuid4())
