"""Route rules about access tokens beyond their signature and claims: the route's issuer
allow-list and the FAPI 2.0 resource-server profile (docs/fapi2.md). Pure functions; no I/O."""

from __future__ import annotations

import urllib.parse

from verifier.domain.model import FAPI2_ALGS, Policy, Profile, TokenClaims
from verifier.domain.reasons import Denial, Reason

_QUERY_TOKEN = "access_token"  # noqa: S105 (a parameter name, RFC 6750 §2.3)


def check_no_token_in_query(target_uri: str) -> None:
    """FAPI 2.0 §5.3.4 (RFC 6750 §2.3): no ``access_token`` query parameter, however it is
    percent-encoded. Raises ``token_in_query``."""
    query = urllib.parse.urlsplit(target_uri).query
    if _QUERY_TOKEN not in urllib.parse.unquote_plus(query):
        return
    names = (name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True))
    if any(name == _QUERY_TOKEN for name in names):
        raise Denial(Reason.TOKEN_IN_QUERY)


def check_route_token(claims: TokenClaims, policy: Policy) -> None:
    """The route's rules for a validated token: its issuer in the route's ``issuers`` (when
    listed), and on a ``fapi2`` route a JWT signed with PS256, ES256 or EdDSA (FAPI 2.0
    §5.4.1; an introspected token's algorithm is the issuer's business)."""
    if policy.issuers and claims.issuer not in policy.issuers:
        raise Denial(Reason.TOKEN_ISSUER_NOT_ALLOWED)
    if policy.profile is Profile.FAPI2 and claims.alg and claims.alg not in FAPI2_ALGS:
        raise Denial(Reason.TOKEN_ALG_NOT_ALLOWED, "not allowed by the fapi2 profile")
