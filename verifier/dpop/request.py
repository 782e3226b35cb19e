"""Checks of the request facts that the caller (sidecar, gateway, service) reports."""

from __future__ import annotations

import re

from verifier.domain.reasons import Denial, Reason
from verifier.domain.uri import InvalidUri, normalize_target_uri

_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")  # RFC 9110 §9.1: a token
_OWS = " \t"  # RFC 9110 §5.6.3: OWS = *( SP / HTAB )


def strip_ows(value: str) -> str:
    """``value`` without the optional white space around a header field value: SP and HTAB
    only (RFC 9110 §5.5, §5.6.3). Any other white space (VT, NBSP, U+3000, ...) stays, so
    that the value fails its syntax check instead of being silently repaired."""
    return value.strip(_OWS)


def check_request(method: str, target_uri: str) -> str:
    """Validate the reported method and target URI; return the normalized target URI.

    A failure here is the integration's fault (``request_invalid``), not the client's.
    """
    if not _METHOD.fullmatch(method):
        raise Denial(Reason.REQUEST_INVALID, "method is not an HTTP method token")
    try:
        return normalize_target_uri(target_uri)
    except InvalidUri as exc:
        raise Denial(Reason.REQUEST_INVALID, f"target URI: {exc}") from exc
