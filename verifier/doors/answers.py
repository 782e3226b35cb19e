"""What a gateway sends on, built from a :class:`Decision` (pure; shared by every front door).

Envoy's ``Check`` (:mod:`verifier.doors.extauthz`) and the forward-auth HTTP listener
(:mod:`verifier.doors.forward_auth`) answer the same decision the same way:

* **allow**: the identity headers for the upstream (key thumbprint, subject, client id, scope,
  issuer; names configurable), or on a report-only route only the report-only header naming the
  would-be denial;
* **deny**: the decision's HTTP status, ``Cache-Control: no-store``, ``WWW-Authenticate`` and
  ``DPoP-Nonce`` when challenging, and a JSON body ``{"error", "error_description"}`` whose
  description is the reason catalogue's message (never the decision's detail, which may name
  internal hosts).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from verifier.domain.model import Decision, TokenClaims
from verifier.domain.reasons import Reason, RfcError, info

_log = logging.getLogger(__name__)

# The JSON body's "error" where the reason has no RFC error code (RFC 6750 §3.1: a request
# without credentials gets none in WWW-Authenticate).
_BODY_ERROR = {401: "unauthorized", 500: "server_error", 503: "temporarily_unavailable"}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class IdentityHeaders:
    """Names of the headers set for the upstream on allow (empty: not sent, still removed)."""

    jkt: str = "x-dpop-jkt"
    subject: str = "x-auth-subject"
    client_id: str = "x-auth-client-id"
    scope: str = "x-auth-scope"
    issuer: str = "x-auth-issuer"
    report_only: str = "x-dpop-report-only"

    def names(self) -> tuple[str, ...]:
        """Every configured name, lower-case."""
        values = (self.jkt, self.subject, self.client_id, self.scope, self.issuer, self.report_only)
        return tuple(name.lower() for name in values if name)


@dataclass(frozen=True, slots=True)
class Denial:
    """A denial as HTTP: status, headers (lower-case names) and the JSON body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: str


def upstream_headers(
    jkt: str, claims: TokenClaims | None, enforced: bool, reason: Reason, names: IdentityHeaders
) -> dict[str, str]:
    """Identity headers for an enforced allow; the report-only header for a would-be denial.
    A claim holding control characters is not forwarded (and logged)."""
    if not enforced:
        return {names.report_only.lower(): reason.value} if names.report_only else {}
    candidates = [(names.jkt, jkt)]
    if claims is not None:
        candidates += [
            (names.subject, claims.subject),
            (names.client_id, claims.client_id),
            (names.scope, claims.scope),
            (names.issuer, claims.issuer),
        ]
    values: dict[str, str] = {}
    for name, value in candidates:
        if name and value and header_safe(value):
            values[name.lower()] = value
        elif name and value:
            _log.warning("not forwarding %s: the token claim holds control characters", name)
    return values


def denial(decision: Decision) -> Denial:
    """The HTTP answer for a denial."""
    status = decision.http_status
    headers = [("cache-control", "no-store"), ("content-type", "application/json")]
    if decision.www_authenticate:
        headers.append(("www-authenticate", decision.www_authenticate))
    if decision.dpop_nonce:
        headers.append(("dpop-nonce", decision.dpop_nonce))
    error = decision.rfc_error.value if decision.rfc_error is not RfcError.NONE else ""
    body = {"error": error or _BODY_ERROR.get(status, "invalid_request"),
            "error_description": info(decision.reason).message}  # fmt: skip
    return Denial(status, tuple(headers), json.dumps(body, separators=(",", ":")))


def header_safe(value: str) -> bool:
    """RFC 9110 §5.5 field value: no control characters (CR, LF, NUL, ...; HTAB is fine)."""
    return _CONTROL.search(value) is None
