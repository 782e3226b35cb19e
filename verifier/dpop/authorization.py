"""Parsing of the ``Authorization`` header (RFC 9110 §11.6.2, RFC 6750 §2.1, RFC 9449 §7.1)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from verifier.dpop.reasons import Denial, Reason

_CREDENTIALS = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) +([A-Za-z0-9\-._~+/]+=*)")


class Scheme(enum.StrEnum):
    """The authorization schemes this service understands."""

    DPOP = "DPoP"
    BEARER = "Bearer"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The scheme and access token of a request."""

    scheme: Scheme
    token: str


def parse_authorization(values: tuple[str, ...], max_token_bytes: int) -> Credentials | None:
    """Return the request's credentials, or None when it carries no Authorization header.

    More than one value, or one value holding a comma (two headers joined by a proxy), is
    ``authorization_multiple``; anything that is not ``<scheme> <token68>`` is
    ``authorization_malformed``. Scheme names are case-insensitive (RFC 9110 §11.1).
    """
    present = [value.strip() for value in values if value.strip()]
    if not present:
        return None
    if len(present) > 1 or "," in present[0]:
        raise Denial(Reason.AUTHORIZATION_MULTIPLE)
    value = present[0]
    if len(value) > max_token_bytes + 16:
        raise Denial(Reason.TOKEN_TOO_LARGE)
    match = _CREDENTIALS.fullmatch(value)
    if match is None:
        raise Denial(Reason.AUTHORIZATION_MALFORMED)
    scheme_name, token = match.group(1).lower(), match.group(2)
    if len(token) > max_token_bytes:
        raise Denial(Reason.TOKEN_TOO_LARGE)
    if scheme_name == "dpop":
        return Credentials(Scheme.DPOP, token)
    if scheme_name == "bearer":
        return Credentials(Scheme.BEARER, token)
    raise Denial(Reason.AUTHORIZATION_SCHEME_UNSUPPORTED)
