"""The front doors' view of the settings: the route table and the ext_authz options."""

from __future__ import annotations

from verifier.api.extauthz_service import ExtAuthzOptions, IdentityHeaders
from verifier.api.target_uri import PublicUrlOptions
from verifier.config import Settings
from verifier.engine.model import Policy
from verifier.engine.routes import RouteTable, parse_routes


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
        identity_headers=IdentityHeaders(
            jkt=settings.upstream_header_jkt,
            subject=settings.upstream_header_subject,
            client_id=settings.upstream_header_client_id,
            scope=settings.upstream_header_scope,
            issuer=settings.upstream_header_issuer,
            report_only=settings.upstream_header_report_only,
        ),
    )
