"""The front doors, built from the settings (part of the composition root): the route table,
the ext_authz and forward-auth options, and the servicers themselves (:func:`front_doors`). No
door reads :class:`~verifier.config.Settings`: each is handed what it needs here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography.x509.verification import Store

from verifier.config import Settings
from verifier.domain.routes import RouteTable
from verifier.doors.answers import IdentityHeaders
from verifier.doors.client_certificate import ClientCertificateOptions
from verifier.doors.extauthz import ExtAuthzOptions, ExtAuthzService
from verifier.doors.forward_auth import ForwardAuthApp, ForwardAuthOptions
from verifier.doors.target_uri import PublicUrlOptions
from verifier.doors.verify import DecisionEngine, VerifyService
from verifier.mtls import trusted_by_set
from verifier.mtls.chain import load_trust_roots
from verifier.telemetry import Telemetry


@dataclass(frozen=True, slots=True)
class FrontDoors:
    """The front doors, each around the same decision engine: the gRPC ``Verify`` and
    ext_authz ``Check`` servicers, and the forward-auth WSGI app (None when
    ``DPOP_HTTP_LISTEN`` is off)."""

    verify: VerifyService
    extauthz: ExtAuthzService
    forward_auth: ForwardAuthApp | None


def front_doors(
    settings: Settings, decisions: DecisionEngine, telemetry: Telemetry | None = None
) -> FrontDoors:
    """The front doors the settings ask for, answering with ``decisions``."""
    check = extauthz_options(settings)  # built once: it reads the CA file of the CA policy
    forward_auth = None
    if settings.server.http_listen:
        options = forward_auth_options(settings, base=check)
        forward_auth = ForwardAuthApp(decisions, options, telemetry=telemetry)
    return FrontDoors(
        verify=VerifyService(
            decisions,
            allow_explain=settings.doors.allow_explain,
            routes=check.routes,
            telemetry=telemetry,
            certificate_roots=check.client_certificate.trust_roots,
        ),
        extauthz=ExtAuthzService(decisions, check, telemetry=telemetry),
        forward_auth=forward_auth,
    )


def route_table(settings: Settings) -> RouteTable:
    """The configured routes; the default is ``require`` with the global nonce setting."""
    return settings.route_table()


def extauthz_options(settings: Settings, routes: RouteTable | None = None) -> ExtAuthzOptions:
    """Everything ``Authorization/Check`` needs besides the engine."""
    return ExtAuthzOptions(
        routes=routes if routes is not None else route_table(settings),
        public_url=PublicUrlOptions(
            trusted_headers=frozenset(settings.doors.trusted_forwarded_headers),
            public_base_urls=dict(settings.doors.public_base_urls),
        ),
        identity_headers=identity_headers(settings),
        client_certificate=client_certificate_options(settings),
    )


def forward_auth_options(
    settings: Settings, routes: RouteTable | None = None, *, base: ExtAuthzOptions | None = None
) -> ForwardAuthOptions:
    """Everything the forward-auth listener needs besides the engine; what it shares with
    ``Check`` comes from ``base`` when given."""
    base = base if base is not None else extauthz_options(settings, routes)
    return ForwardAuthOptions(
        trusted_proxies=tuple(ipaddress.ip_network(n) for n in settings.doors.http_trusted_proxies),
        routes=base.routes,
        public_url=base.public_url,
        identity_headers=base.identity_headers,
        max_header_fields=settings.doors.http_max_header_fields,
        client_certificate=base.client_certificate,
    )


def client_certificate_options(settings: Settings) -> ClientCertificateOptions:
    """Where the front doors read the client certificate (RFC 8705)."""
    return ClientCertificateOptions(
        extauthz_source=settings.doors.extauthz_client_cert,
        xfcc_trusted_by=trusted_by_set(settings.doors.xfcc_trusted_by),
        http_header=settings.doors.http_client_cert_header,
        http_format=settings.doors.http_client_cert_format,
        trust_roots=trust_roots(settings.doors.client_cert_ca_file),
    )


def identity_headers(settings: Settings) -> IdentityHeaders:
    """The configured names of the identity headers."""
    return IdentityHeaders(
        jkt=settings.doors.upstream_header_jkt,
        subject=settings.doors.upstream_header_subject,
        client_id=settings.doors.upstream_header_client_id,
        scope=settings.doors.upstream_header_scope,
        issuer=settings.doors.upstream_header_issuer,
        report_only=settings.doors.upstream_header_report_only,
    )


def trust_roots(ca_file: str) -> Store | None:
    """The CAs of ``DPOP_CLIENT_CERT_CA_FILE`` (checked at start-up), or None when unset."""
    return load_trust_roots(Path(ca_file).read_bytes()) if ca_file else None
