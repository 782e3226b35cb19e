"""Pure checks of JWT access-token claims (RFC 9068 §4, RFC 7519 §4.1, RFC 9449 §6.1)."""

from __future__ import annotations

import math
from typing import Any

from verifier.dpop.reasons import Denial, Reason
from verifier.engine.model import TokenClaims

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


def check_audience(payload: dict[str, Any], audience: str | None) -> None:
    """``aud`` (a string or an array of strings) contains the configured audience."""
    if audience is None:
        return
    aud = payload.get("aud")
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or audience not in values:
        raise Denial(Reason.TOKEN_AUDIENCE_INVALID)


def check_token_claims(
    payload: dict[str, Any], *, audience: str | None, now: float, leeway: float
) -> TokenClaims:
    """Validate time, audience and binding claims; return the identity claims.

    ``exp`` is required (a token that never expires is refused); ``nbf`` and ``iat`` must not
    be in the future beyond ``leeway`` seconds. Each of them must be a number between
    :data:`EARLIEST_NUMERIC_DATE` and :data:`LATEST_NUMERIC_DATE`.
    """
    exp = _numeric(payload, "exp")
    if exp is None or exp <= now - leeway:
        raise Denial(Reason.TOKEN_EXPIRED)
    nbf = _numeric(payload, "nbf")
    iat = _numeric(payload, "iat")
    for value in (nbf, iat):
        if value is not None and value > now + leeway:
            raise Denial(Reason.TOKEN_NOT_YET_VALID)
    check_audience(payload, audience)
    return TokenClaims(
        issuer=_optional_string(payload, "iss"),
        subject=_optional_string(payload, "sub"),
        client_id=_optional_string(payload, "client_id"),
        scope=_scope(payload),
        expires_at=int(exp),
        jkt=confirmation_jkt(payload),
    )
