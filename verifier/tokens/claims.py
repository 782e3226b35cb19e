"""Pure checks of JWT access-token claims (RFC 9068 §4, RFC 7519 §4.1, RFC 9449 §6.1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from verifier.domain.model import TokenClaims
from verifier.domain.reasons import Denial, Reason

MAX_CLAIM_CHARS = 4096
EARLIEST_NUMERIC_DATE = -62_135_596_800
"""0001-01-01T00:00:00Z: the earliest ``exp``/``nbf``/``iat`` accepted."""
LATEST_NUMERIC_DATE = 253_402_300_799
"""9999-12-31T23:59:59Z: the latest ``exp``/``nbf``/``iat`` accepted.

RFC 7519 §2 puts no bound on a NumericDate. Dates outside years 1-9999 (the range of RFC 3339
timestamps and of most date libraries) are refused as ``token_claims_invalid`` rather than
read as "far future": an issuer that sends one is broken, and the bound keeps ``exp`` exact as
a float (< 2**53) and inside the API's int64 ``claims.exp``.
"""


def _optional_string(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_CLAIM_CHARS:
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, f"{name} must be a string")
    return value


def _numeric(payload: dict[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        number = math.inf
    if not math.isfinite(number):  # JSON 1e400 parses as inf
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, f"{name} must be a finite number")
    if not EARLIEST_NUMERIC_DATE <= number <= LATEST_NUMERIC_DATE:
        raise Denial(
            Reason.TOKEN_CLAIMS_INVALID, f"{name} must be a date within the years 1 to 9999"
        )
    return number


def _scope(payload: dict[str, Any]) -> str:
    value = payload.get("scope", payload.get("scp"))
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = " ".join(value)
    if not isinstance(value, str) or len(value) > MAX_CLAIM_CHARS:
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, "scope must be a string")
    return value


def confirmation_jkt(payload: dict[str, Any]) -> str:
    """The token's ``cnf.jkt`` (RFC 9449 §6.1), or "" when the token is not DPoP-bound."""
    cnf = payload.get("cnf")
    if cnf is None:
        return ""
    if not isinstance(cnf, dict):
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, "cnf must be an object")
    jkt = cnf.get("jkt")
    if jkt is None:
        return ""
    if not isinstance(jkt, str) or not 0 < len(jkt) <= 128:
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, "cnf.jkt must be a string")
    return jkt


Audience = str | Sequence[str] | None
"""The audiences an issuer's tokens may name: one, several (any match counts), or None (``aud``
is not checked)."""

CLIENT_ID_CLAIMS: tuple[str, ...] = ("client_id", "azp")
"""Where a token names its client, first found wins: ``client_id`` (RFC 9068 §2.2, RFC 7662
§2.2), then ``azp`` (OpenID Connect Core §2: the authorized party, the client's id)."""

AT_JWT_TYPES = frozenset({"at+jwt"})
"""The ``typ`` of a JWT access token (RFC 9068 §2.1, §4), after :func:`normalize_typ`."""


def confirmation_x5t_s256(payload: dict[str, Any]) -> str:
    """The token's ``cnf["x5t#S256"]`` (RFC 8705 §3.1; the top-level ``cnf`` of an
    introspection answer, §3.2), or "" when the token is not certificate-bound. Its form
    (43 base64url characters) is checked with the binding (``client_certificate_mismatch``)."""
    cnf = payload.get("cnf")
    if not isinstance(cnf, dict):  # absent, or refused by confirmation_jkt
        return ""
    x5t = cnf.get("x5t#S256")
    if x5t is None:
        return ""
    if not isinstance(x5t, str) or not 0 < len(x5t) <= 128:
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, "cnf.x5t#S256 must be a string")
    return x5t


def audiences_of(audience: Audience) -> tuple[str, ...] | None:
    """``audience`` as a tuple (None stays None: not checked)."""
    if audience is None:
        return None
    return (audience,) if isinstance(audience, str) else tuple(audience)


def check_audience(payload: dict[str, Any], audience: Audience) -> None:
    """``aud`` (a string or an array of strings) contains one of the configured audiences.

    RFC 9068 §4 and RFC 7519 §4.1.3: the token is refused unless ``aud`` names this resource
    server; any one of several configured audiences counts. None: not checked."""
    expected = audiences_of(audience)
    if expected is None:
        return
    aud = payload.get("aud")
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not any(
        isinstance(value, str) and value in expected for value in values
    ):
        raise Denial(Reason.TOKEN_AUDIENCE_INVALID)


def normalize_typ(typ: str) -> str:
    """A ``typ`` value in the form compared: lower case, ``application/`` removed.

    RFC 7515 §4.1.9: media type names are case-insensitive, and ``application/`` may be left
    out when no other ``/`` appears (``application/at+jwt`` is ``at+jwt``)."""
    value = typ.strip().lower()
    rest = value.removeprefix("application/")
    return rest if "/" not in rest else value


def check_token_type(header: dict[str, Any], allowed: frozenset[str] = AT_JWT_TYPES) -> None:
    """RFC 9068 §4: the JOSE header ``typ`` is one the issuer uses for access tokens.

    ``allowed`` holds normalized values (:func:`normalize_typ`); "" in it accepts a token
    without ``typ``. A proof (``dpop+jwt``) is never an access token."""
    typ = header.get("typ")
    if typ is None:
        if "" not in allowed:
            raise Denial(Reason.TOKEN_MALFORMED, "no typ header: not an access token")
        return
    if not isinstance(typ, str) or len(typ) > 64:
        raise Denial(Reason.TOKEN_MALFORMED, "typ must be a string")
    normalized = normalize_typ(typ)
    if normalized == "dpop+jwt" or normalized not in allowed:
        raise Denial(Reason.TOKEN_MALFORMED, "typ is not an access-token type of its issuer")


def _client_id(payload: dict[str, Any], claims: Sequence[str]) -> str:
    for name in claims:
        value = _optional_string(payload, name)
        if value:
            return value
    return ""


def check_token_claims(
    payload: dict[str, Any],
    *,
    audience: Audience,
    now: float,
    leeway: float,
    require_iat: bool = False,
    client_id_claims: Sequence[str] = CLIENT_ID_CLAIMS,
) -> TokenClaims:
    """Validate time, audience and binding claims; return the identity claims.

    ``exp`` is required (a token that never expires is refused); ``iat`` too when
    ``require_iat`` (RFC 9068 §2.2: JWT access tokens; an introspection answer may omit it,
    RFC 7662 §2.2). ``nbf`` and ``iat`` must not be in the future beyond ``leeway`` seconds.
    Each of them must be a number between :data:`EARLIEST_NUMERIC_DATE` and
    :data:`LATEST_NUMERIC_DATE`. The client is the first of ``client_id_claims`` present.
    """
    exp = _numeric(payload, "exp")
    if exp is None or exp <= now - leeway:
        raise Denial(Reason.TOKEN_EXPIRED)
    nbf = _numeric(payload, "nbf")
    iat = _numeric(payload, "iat")
    if iat is None and require_iat:  # RFC 9068 §2.2: iat is REQUIRED
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, "iat is required")
    for value in (nbf, iat):
        if value is not None and value > now + leeway:
            raise Denial(Reason.TOKEN_NOT_YET_VALID)
    check_audience(payload, audience)
    return TokenClaims(
        issuer=_optional_string(payload, "iss"),
        subject=_optional_string(payload, "sub"),
        client_id=_client_id(payload, client_id_claims),
        scope=_scope(payload),
        expires_at=int(exp),
        jkt=confirmation_jkt(payload),
        x5t_s256=confirmation_x5t_s256(payload),
    )
