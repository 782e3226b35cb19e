"""The front doors' view of the settings: the route table, the ext_authz and forward-auth
options."""

from __future__ import annotations

import ipaddress

from verifier.config import Settings
from verifier.domain.model import Policy
from verifier.domain.routes import RouteTable, parse_routes
from verifier.doors.answers import IdentityHeaders
from verifier.doors.client_certificate import ClientCertificateOptions
from verifier.doors.extauthz import ExtAuthzOptions
from verifier.doors.forward_auth import ForwardAuthOptions
from verifier.doors.target_uri import PublicUrlOptions
from verifier.mtls import trusted_by_set


def route_table(settings: Settings) -> RouteTable:
    """The configured routes; the default is ``require`` with the global nonce setting."""
    return parse_routes(settings.routes, default=Policy(nonce_required=settings.nonce_required))


def extauthz_options(settings: Settings, routes: RouteTable | None = None) -> ExtAuthzOptions:
    """Everything ``Authorization/Check`` needs besides the engine."""
    return ExtAuthzOptions(
        routes=routes if routes is not None else route_table(settings),
        public_url=PublicUrlOptions(
            trusted_headers=frozenset(settings.trusted_forwarded_headers),
            public_base_urls=dict(settings.public_base_urls),
        ),
        identity_headers=identity_headers(settings),
        client_certificate=client_certificate_options(settings),
    )


def forward_auth_options(
    settings: Settings, routes: RouteTable | None = None
) -> ForwardAuthOptions:
    """Everything the forward-auth listener needs besides the engine."""
    base = extauthz_options(settings, routes)
    return ForwardAuthOptions(
        trusted_proxies=tuple(ipaddress.ip_network(n) for n in settings.http_trusted_proxies),
        routes=base.routes,
        public_url=base.public_url,
        identity_headers=base.identity_headers,
        max_header_fields=settings.http_max_header_fields,
        client_certificate=base.client_certificate,
    )


def client_certificate_options(settings: Settings) -> ClientCertificateOptions:
    """Where the front doors read the client certificate (RFC 8705)."""
    return ClientCertificateOptions(
        extauthz_source=settings.extauthz_client_cert,
        xfcc_trusted_by=trusted_by_set(settings.xfcc_trusted_by),
        http_header=settings.http_client_cert_header,
        http_format=settings.http_client_cert_format,
    )


def identity_headers(settings: Settings) -> IdentityHeaders:
    """The configured names of the identity headers."""
    return IdentityHeaders(
        jkt=settings.upstream_header_jkt,
        subject=settings.upstream_header_subject,
        client_id=settings.upstream_header_client_id,
        scope=settings.upstream_header_scope,
        issuer=settings.upstream_header_issuer,
        report_only=settings.upstream_header_report_only,
    )
