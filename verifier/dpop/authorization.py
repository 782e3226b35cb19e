"""Parsing of the ``Authorization`` header (RFC 9110 §11.6.2, RFC 6750 §2.1, RFC 9449 §7.1)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from verifier.domain.reasons import Denial, Reason
from verifier.dpop.request import strip_ows

# RFC 9110 §5.6.2: token = 1*tchar.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# RFC 9110 §5.6.4: quoted-string, qdtext and quoted-pair (no control characters).
_QUOTED = r'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CREDENTIALS = re.compile(rf"({_TCHARS}) +([A-Za-z0-9\-._~+/]+=*)")
# RFC 9110 §11.2: auth-param = token BWS "=" BWS ( token / quoted-string ).
_AUTH_PARAM = re.compile(rf"{_TCHARS}[ \t]*=[ \t]*(?:{_TCHARS}|{_QUOTED})")
# The first element of credentials made of auth-params (RFC 9110 §11.6.2: credentials =
# auth-scheme [ 1*SP ( token68 / #auth-param ) ]).
_SCHEME_WITH_PARAMS = re.compile(rf"{_TCHARS} +{_AUTH_PARAM.pattern}")
_LEADING_SCHEME = re.compile(_TCHARS)
_LIST_ELEMENT = re.compile(rf'(?:{_QUOTED}|[^",])*')
_TOKEN68_SCHEMES = frozenset({"dpop", "bearer"})


class Scheme(enum.StrEnum):
    """The authorization schemes this service understands."""

    DPOP = "DPoP"
    BEARER = "Bearer"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The scheme and access token of a request."""

    scheme: Scheme
    token: str


def _split_list(value: str) -> list[str] | None:
    """The comma-separated elements of ``value`` (commas inside quoted strings kept, empty
    elements dropped: RFC 9110 §5.6.1.2); None when a quoted string is not closed or holds
    a control character."""
    elements: list[str] = []
    position = 0
    while True:
        match = _LIST_ELEMENT.match(value, position)
        assert match is not None  # the pattern matches the empty string
        position = match.end()
        if element := strip_ows(match.group()):
            elements.append(element)
        if position == len(value):
            return elements
        if value[position] != ",":  # a quote that opens no valid quoted-string
            return None
        position += 1


def _is_joined(value: str) -> bool:
    """Whether a value holding a comma is several credentials joined by a proxy.

    ``DPoP`` and ``Bearer`` credentials are a token68, which never holds a comma: with one,
    the value is two header lines (RFC 9110 §5.3), one of them possibly empty (as is the first
    one when the value starts with a comma). Other schemes
    may carry a comma-separated list of auth-params (``Digest a=1, b=2``, RFC 9110 §11.6.2):
    there a later element that is not an ``auth-param`` starts a second credentials.
    """
    if value.startswith(",") or _scheme_of(value) in _TOKEN68_SCHEMES:
        return True
    return any(not _AUTH_PARAM.fullmatch(element) for element in _elements(value)[1:])


def _scheme_of(value: str) -> str:
    scheme = _LEADING_SCHEME.match(value)
    return scheme.group().lower() if scheme is not None else ""


def _elements(value: str) -> list[str]:
    elements = _split_list(value)
    if elements is None:
        raise Denial(Reason.AUTHORIZATION_MALFORMED, "invalid quoted string")
    return elements


def parse_authorization(values: tuple[str, ...], max_token_bytes: int) -> Credentials | None:
    """Return the request's credentials, or None when it carries no Authorization header.

    More than one value, or one value holding two credentials joined by a proxy with a comma
    (Envoy, WSGI servers), is ``authorization_multiple``. Only ``DPoP <token68>`` and
    ``Bearer <token68>`` are read; any other scheme followed by a token68 or by auth-params
    (``Basic dXNlcg==``, ``Digest a=1, b=2``) is ``authorization_scheme_unsupported``, and
    anything else ``authorization_malformed`` (RFC 9110 §11.6.2). Scheme names are
    case-insensitive (RFC 9110 §11.1). Only SP and HTAB around the value are optional white
    space (:func:`~verifier.dpop.request.strip_ows`); empty values are ignored.
    """
    present = [value for value in map(strip_ows, values) if value]
    if not present:
        return None
    if len(present) > 1:
        raise Denial(Reason.AUTHORIZATION_MULTIPLE)
    value = present[0]
    if "," in value and _is_joined(value):
        raise Denial(Reason.AUTHORIZATION_MULTIPLE, "comma-joined Authorization header")
    if len(value) > max_token_bytes + 16:
        raise Denial(Reason.TOKEN_TOO_LARGE)
    match = _CREDENTIALS.fullmatch(value)
    if match is None:
        # Not <scheme> <token68>: credentials of auth-params are well-formed, but DPoP and
        # Bearer credentials are a token68 only (RFC 6750 §2.1, RFC 9449 §7.1).
        first = next(iter(_elements(value)), "")
        if _scheme_of(value) in _TOKEN68_SCHEMES or not _SCHEME_WITH_PARAMS.fullmatch(first):
            raise Denial(Reason.AUTHORIZATION_MALFORMED)
        raise Denial(Reason.AUTHORIZATION_SCHEME_UNSUPPORTED)
    scheme_name, token = match.group(1).lower(), match.group(2)
    if len(token) > max_token_bytes:
        raise Denial(Reason.TOKEN_TOO_LARGE)
    if scheme_name == "dpop":
        return Credentials(Scheme.DPOP, token)
    if scheme_name == "bearer":
        return Credentials(Scheme.BEARER, token)
    raise Denial(Reason.AUTHORIZATION_SCHEME_UNSUPPORTED)
