"""Reading the verifier's answer."""

from __future__ import annotations

from dpop_verifier_client._generated.dpop.verifier.v1.verifier_pb2 import (
    DECISION_ALLOW,
    VerifyResponse,
)


def is_allowed(response: VerifyResponse) -> bool:
    """True only for ``DECISION_ALLOW``; an unspecified or unknown decision is a deny."""
    return bool(response.decision == DECISION_ALLOW)


def response_headers(response: VerifyResponse) -> list[tuple[str, str]]:
    """The headers the application must send back: ``WWW-Authenticate`` on a deny and
    ``DPoP-Nonce`` when the verifier issued a nonce (either may be absent)."""
    headers = []
    if response.www_authenticate:
        headers.append(("WWW-Authenticate", response.www_authenticate))
    if response.dpop_nonce:
        headers.append(("DPoP-Nonce", response.dpop_nonce))
    return headers
