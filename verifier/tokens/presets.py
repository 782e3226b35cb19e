"""Issuer presets: what the authorization servers people run put in their access tokens.

A preset is a starting point for an ``issuers`` entry (``preset = "keycloak"``): its
:attr:`IssuerPreset.settings` are laid under the entry, and every key the entry sets wins. Each
preset records, from the vendor's public documentation (:attr:`IssuerPreset.sources`), what the
server puts in the token's ``typ`` header and its ``aud``, ``cnf`` and ``iat`` claims, where it
names the client, what its introspection endpoint answers, and where its metadata lives.
docs/token-sources.md has a section per preset; ``dpop-verifier issuer check`` shows what a
running server actually publishes.

Pure data: no I/O, no imports from the rest of the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class IssuerPreset:
    """One authorization server's token profile, as its vendor documents it."""

    name: str
    """The ``preset`` value in an ``issuers`` entry."""
    title: str
    settings: Mapping[str, Any]
    """``issuers`` keys (as a config file writes them) the entry starts from."""
    typ: str
    """What the server puts in the JOSE ``typ`` header of a JWT access token."""
    aud: str
    """What ``aud`` holds, and how to choose the ``audience`` to configure."""
    cnf: str
    """How DPoP binding shows (``cnf.jkt`` in the JWT and in introspection answers)."""
    iat: str
    client: str
    """Which claim names the client (``x-auth-client-id``)."""
    introspection: str
    """Whether an RFC 7662 endpoint exists, and what it answers."""
    metadata: str
    """Where the metadata lives (and so what ``issuer`` and ``discovery`` find)."""
    sources: tuple[str, ...]
    """The vendor's public pages these facts come from."""


def _preset(name: str, title: str, settings: dict[str, Any], **facts: Any) -> IssuerPreset:
    return IssuerPreset(name=name, title=title, settings=MappingProxyType(settings), **facts)


PRESETS: Mapping[str, IssuerPreset] = MappingProxyType(
    {
        preset.name: preset
        for preset in (
            _preset(
                "keycloak",
                "Keycloak",
                {
                    "discovery": True,
                    "jwt_typ": ["JWT", "at+jwt"],
                    "client_id_claims": ["client_id", "azp"],
                },
                typ='"JWT" by default; "at+jwt" once a client\'s access-token header type setting '
                "(added in 2025, keycloak PR 37573) says so. Both are accepted.",
                aud="only what audience mappers (or client scopes with one) add; without one, "
                'often just "account". Add an Audience mapper naming your API and configure it.',
                cnf='"cnf": {"jkt": ...} in DPoP-bound access tokens (DPoP switched on per '
                "client: Require DPoP bound tokens).",
                iat="always present.",
                client='"azp" (the client that asked for the token); "client_id" in '
                "service-account (client-credentials) tokens.",
                introspection="<issuer>/protocol/openid-connect/token/introspect, for "
                "confidential clients; the answer repeats the token's claims with active.",
                metadata="<issuer>/.well-known/openid-configuration, the issuer being "
                "https://host/realms/<realm> (the RFC 8414 URL answers 404).",
                sources=(
                    "https://www.keycloak.org/securing-apps/dpop",
                    "https://www.keycloak.org/docs/latest/server_admin/#_audience",
                    "https://github.com/keycloak/keycloak/pull/37573",
                ),
            ),
            _preset(
                "auth0",
                "Auth0",
                {
                    "discovery": True,
                    "jwt_typ": ["at+jwt", "JWT"],
                    "client_id_claims": ["client_id", "azp"],
                },
                typ='"at+jwt" with the RFC 9068 token profile; "JWT" with the default Auth0 '
                "profile. Both are accepted.",
                aud="the API identifier (a list that also holds the /userinfo URL when openid "
                "was asked for). Configure the API identifier.",
                cnf='"cnf": {"jkt": ...} in access tokens for APIs with DPoP (sender '
                "constraining) on.",
                iat="always present.",
                client='"azp" (Auth0 profile) or "client_id" (RFC 9068 profile); '
                'client-credentials tokens also have sub "<client_id>@clients".',
                introspection="none for access tokens: verify JWTs locally.",
                metadata="https://<tenant>/.well-known/openid-configuration; the issuer ends "
                'with "/" and must be written so.',
                sources=(
                    "https://auth0.com/docs/secure/tokens/access-tokens/access-token-profiles",
                    "https://auth0.com/docs/get-started/apis/configure-access-token-profile",
                    "https://auth0.com/docs/secure/sender-constraining/"
                    "demonstrating-proof-of-possession-dpop",
                ),
            ),
            _preset(
                "okta",
                "Okta (custom authorization server)",
                {
                    "discovery": True,
                    "jwt_typ": ["", "at+jwt"],
                    "client_id_claims": ["cid", "client_id"],
                },
                typ='no "typ" header in the published examples (header: kid, alg only); a '
                'token without typ is accepted, and "at+jwt".',
                aud='the authorization server\'s audience setting ("api://default" for the '
                "default server). Configure that value.",
                cnf='"cnf": {"jkt": ...} in DPoP-bound access tokens; introspection answers '
                'carry token_type "DPoP" and cnf.jkt.',
                iat="always present.",
                client='"cid" in the JWT; "client_id" in introspection answers.',
                introspection="<issuer>/v1/introspect, for a client of that server "
                "(client_secret_basic, or private_key_jwt).",
                metadata="<issuer>/.well-known/oauth-authorization-server, the issuer being "
                "https://<org>.okta.com/oauth2/<server id> (org-server tokens are for Okta's "
                "own APIs only).",
                sources=(
                    "https://developer.okta.com/docs/guides/validate-access-tokens/overview/",
                    "https://developer.okta.com/docs/guides/dpop/oktaresourceserver/main/",
                    "https://developer.okta.com/standards/OIDC/",
                ),
            ),
            _preset(
                "entra",
                "Microsoft Entra ID (v2.0 tokens)",
                {
                    "discovery": True,
                    "jwt_typ": ["JWT"],
                    "algs": ["RS256"],
                    "client_id_claims": ["azp", "appid", "client_id"],
                },
                typ='"JWT".',
                aud="the API's application (client) id for v2.0 tokens, its App ID URI for "
                "v1.0 tokens. Configure both when clients may get either.",
                cnf="no DPoP for your own APIs: Entra access tokens are Bearer tokens, so "
                "they pass only on allow-bearer routes.",
                iat="always present.",
                client='"azp" (v2.0) or "appid" (v1.0).',
                introspection="none: verify JWTs locally.",
                metadata="https://login.microsoftonline.com/<tenant>/v2.0/.well-known/"
                "openid-configuration; the issuer of v2.0 tokens is "
                "https://login.microsoftonline.com/<tenant id>/v2.0.",
                sources=(
                    "https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference",
                    "https://learn.microsoft.com/entra/identity-platform/access-tokens",
                    "https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc",
                ),
            ),
            _preset(
                "curity",
                "Curity Identity Server",
                {
                    "discovery": True,
                    "jwt_typ": ["at+jwt", "JWT"],
                    "client_id_claims": ["client_id", "azp"],
                },
                typ='"at+jwt" for JWT access tokens; "JWT" from older versions. Both are accepted.',
                aud="the audiences configured on the client (by default its client id). "
                "Configure them.",
                cnf='"cnf": {"jkt": ...} for DPoP-bound tokens (DPoP for all clients since '
                'version 11.4), in JWTs and in introspection answers (token_type "DPoP").',
                iat="always present.",
                client='"client_id".',
                introspection="<issuer-base>/oauth-introspect (metadata: "
                "introspection_endpoint), for a client with the introspection capability; "
                "opaque (by-reference) tokens are the default.",
                metadata="<issuer>/.well-known/openid-configuration.",
                sources=(
                    "https://curity.io/docs/identity-server/profiles/token-profile/clients/"
                    "client-config/dpop",
                    "https://curity.io/resources/learn/jwt-best-practices/",
                    "https://curity.io/resources/learn/introspect-with-phantom-token/",
                ),
            ),
            _preset(
                "hydra",
                "Ory Hydra",
                {
                    "discovery": True,
                    "jwt_typ": ["JWT", "at+jwt"],
                    "client_id_claims": ["client_id"],
                },
                typ='"JWT" with the jwt access-token strategy (opaque tokens are the default).',
                aud="what the client asked for in the audience parameter (from its allowed "
                "audiences); may be empty. Configure the audience you require.",
                cnf="no DPoP binding: Hydra issues Bearer tokens, which pass only on "
                "allow-bearer routes.",
                iat="always present.",
                client='"client_id".',
                introspection="/admin/oauth2/introspect on the admin API (not the public "
                "port); put it behind your own authentication.",
                metadata="<issuer>/.well-known/openid-configuration.",
                sources=(
                    "https://www.ory.sh/docs/oauth2-oidc/jwt-access-token",
                    "https://www.ory.sh/docs/hydra/advanced",
                    "https://www.ory.sh/docs/hydra/guides/jwt",
                ),
            ),
            _preset(
                "node-oidc-provider",
                "panva/oidc-provider",
                {
                    "discovery": True,
                    "jwt_typ": ["at+jwt"],
                    "client_id_claims": ["client_id"],
                },
                typ='"at+jwt" (RFC 9068).',
                aud="the resource indicator (RFC 8707) of the request, as "
                "getResourceServerInfo returns it. Configure your resource's audience.",
                cnf='"cnf": {"jkt": ...} when the token request carried a DPoP proof; '
                'introspection answers say token_type "DPoP" with cnf.jkt.',
                iat="always present.",
                client='"client_id"; in client-credentials JWTs "sub" is the client id too, '
                "while introspection answers for them carry no sub.",
                introspection="<issuer>/token/introspection when features.introspection is "
                "on; opaque tokens unless the resource server asks for jwt.",
                metadata="<issuer>/.well-known/openid-configuration, and the RFC 8414 "
                "/.well-known/oauth-authorization-server.",
                sources=(
                    "https://github.com/panva/node-oidc-provider/blob/main/docs/README.md",
                    "https://github.com/panva/node-oidc-provider/blob/main/lib/models/formats/jwt.js",
                ),
            ),
        )
    }
)
"""Every preset by name."""


def presets_markdown() -> str:
    """The presets as docs/token-sources.md shows them: a summary table, then one section each
    (a test keeps the document equal to this)."""
    rows = [
        "| Preset | `jwt_typ` | `client_id_claims` | other settings |",
        "|---|---|---|---|",
    ]
    sections = []
    for preset in PRESETS.values():
        settings = dict(preset.settings)
        typ = ", ".join(f"`{t}`" if t else '`""` (none)' for t in settings.pop("jwt_typ"))
        claims = ", ".join(f"`{c}`" for c in settings.pop("client_id_claims"))
        other = ", ".join(f"`{key} = {json.dumps(value)}`" for key, value in settings.items())
        rows.append(f"| `{preset.name}` | {typ} | {claims} | {other} |")
        facts = (
            ("`typ`", preset.typ),
            ("`aud`", preset.aud),
            ("`cnf`", preset.cnf),
            ("`iat`", preset.iat),
            ("Client", preset.client),
            ("Introspection", preset.introspection),
            ("Metadata", preset.metadata),
        )
        lines = [f'### {preset.title} (`preset = "{preset.name}"`)', ""]
        lines += [f"* **{label}**: {text}" for label, text in facts]
        lines.append("* **Sources**: " + ", ".join(f"<{url}>" for url in preset.sources))
        sections.append("\n".join(lines))
    return "\n".join(rows) + "\n\n" + "\n\n".join(sections) + "\n"
