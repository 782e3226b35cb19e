"""Access tokens: the validator's routing (verifier/tokens/validator.py), compact JWS parsing
(verifier/jose/rfc7515.py) and the claim checks (verifier/tokens/claims.py, introspection.py).

Input: the token, as the text after ``DPoP `` in an ``Authorization`` header: it reaches the
validator only through :func:`parse_authorization`, as in the engine. Documented outcomes:
:class:`~verifier.domain.reasons.Denial` and :class:`~verifier.jose.rfc7515.MalformedJws` (from
:func:`parse_compact`, which the validator turns into ``token_malformed``).
"""

from __future__ import annotations

from fuzz.fixtures import AUDIENCE, ISSUER, MAX_TOKEN_BYTES, NOW, TOKEN_LEEWAY, trusted_issuer
from fuzz.harness import Harness, text
from verifier.domain.model import TokenClaims
from verifier.domain.reasons import Denial, Reason
from verifier.dpop.authorization import parse_authorization
from verifier.jose.rfc7515 import MalformedJws, parse_compact
from verifier.tokens.claims import check_token_claims
from verifier.tokens.introspection import check_introspection
from verifier.tokens.validator import TokenValidator, TrustedIssuer

OPAQUE_ISSUER = "https://opaque.example.com"


class _InactiveIntrospector:
    """Stands in for the introspection endpoint of the issuer of opaque tokens: every token is
    inactive (the call itself is HTTP, not fuzzed here)."""

    def introspect(self, token: str, digest: bytes, now: float) -> TokenClaims:
        raise Denial(Reason.TOKEN_INACTIVE)


JWT_ONLY = TokenValidator([trusted_issuer()], leeway=TOKEN_LEEWAY)
WITH_OPAQUE = TokenValidator(
    [
        trusted_issuer(),
        TrustedIssuer(
            OPAQUE_ISSUER,
            introspector=_InactiveIntrospector(),  # type: ignore[arg-type]
            opaque_tokens=True,
        ),
    ],
    leeway=TOKEN_LEEWAY,
)


def access_token(data: bytes) -> str:
    """The token an ``Authorization: DPoP <input>`` header carries (or a Denial)."""
    credentials = parse_authorization((f"DPoP {text(data)}",), MAX_TOKEN_BYTES)
    assert credentials is not None
    return credentials.token


def validate(data: bytes) -> None:
    """Routing by ``iss``, ``alg``, key lookup, signature and claims, with no opaque issuer."""
    claims = JWT_ONLY.validate(access_token(data), NOW)
    assert claims.issuer == ISSUER and claims.expires_at > NOW - TOKEN_LEEWAY - 1


def validate_or_introspect(data: bytes) -> None:
    """The same with an issuer of opaque tokens: what is not a JWT goes to introspection."""
    WITH_OPAQUE.validate(access_token(data), NOW)


def check_claims(data: bytes) -> None:
    """The payload's claims as a JWT's and as an introspection answer, whatever the signature."""
    payload = parse_compact(access_token(data)).payload
    claims = check_token_claims(payload, audience=AUDIENCE, now=NOW, leeway=TOKEN_LEEWAY)
    assert claims.expires_at > NOW - TOKEN_LEEWAY - 1
    check_introspection(payload, issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=TOKEN_LEEWAY)


HARNESS = Harness("token", (validate, validate_or_introspect, check_claims), (Denial, MalformedJws))
