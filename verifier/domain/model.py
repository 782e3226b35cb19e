"""The values that cross the engine's boundary: request facts in, a decision out.

Every front door (the ``Verify`` RPC, Envoy's ``Check``, the CLI) turns its wire message into a
:class:`RequestFacts` and turns the :class:`Decision` back into its own wire answer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from verifier.domain.reasons import CATALOGUE, Reason, RfcError


class Mode(enum.StrEnum):
    """What the engine enforces for a request (per route, see the route policy)."""

    REQUIRE = "require"
    """A DPoP-bound token with a valid proof is mandatory."""
    ALLOW_BEARER = "allow-bearer"
    """Plain Bearer tokens pass; a DPoP-bound token must still come with a valid proof."""
    REPORT_ONLY = "report-only"
    """Verify and report, but allow: the would-be denial is in the decision's ``enforced=False``."""
    OFF = "off"
    """No verification at all: every request is allowed."""


class SenderConstraint(enum.StrEnum):
    """How a route's access tokens must be bound to the client (per route)."""

    DPOP = "dpop"
    """DPoP (RFC 9449): today's behaviour, the default."""
    MTLS = "mtls"
    """Mutual TLS (RFC 8705): the token carries ``cnf["x5t#S256"]`` naming the client
    certificate; no DPoP proof is needed."""
    EITHER = "either"
    """Whichever binding the token carries is checked (both when it carries both)."""
    NONE = "none"
    """No sender constraint is required; a bound token is still checked against its binding."""


class Profile(enum.StrEnum):
    """A named set of extra rules for a route."""

    NONE = ""
    FAPI2 = "fapi2"
    """FAPI 2.0 Security Profile, resource server (docs/fapi2.md): bound tokens only, PS256 /
    ES256 / EdDSA only, proof ``iat`` up to 10 s ahead, no token in the query."""


FAPI2_ALGS = ("PS256", "ES256", "EdDSA")
"""FAPI 2.0 §5.4.1: the only algorithms of proofs and tokens on a ``fapi2`` route."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The enforcement policy for one request."""

    mode: Mode = Mode.REQUIRE
    nonce_required: bool = False
    sender_constraint: SenderConstraint = SenderConstraint.DPOP
    profile: Profile = Profile.NONE
    issuers: tuple[str, ...] = ()
    """The issuers whose tokens this route accepts (empty: every trusted issuer)."""


@dataclass(frozen=True, slots=True)
class ClientCertificateFacts:
    """What a front door learnt about the client certificate (RFC 8705), as the engine needs it.

    ``sha256`` is the SHA-256 of the leaf's DER (empty when no usable certificate arrived);
    ``problem`` says why not when the door looked for one and found nothing usable
    (``client_certificate_missing`` / ``_invalid`` / ``_untrusted``), ``detail`` says what
    precisely (never the certificate itself)."""

    sha256: bytes = b""
    problem: Reason | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a sidecar, gateway or service knows about one HTTP request.

    ``authorization`` and ``dpop`` hold every header value as received, so that duplicates
    can be rejected. ``proof_only`` selects the token-endpoint mode: no access token, the proof
    alone is verified and its key thumbprint returned for binding.
    """

    method: str
    target_uri: str
    authorization: tuple[str, ...] = ()
    dpop: tuple[str, ...] = ()
    proof_only: bool = False
    client_address: str = ""
    route: str = ""
    policy: Policy = field(default_factory=Policy)
    client_certificate: ClientCertificateFacts | None = None
    """The client certificate (None: this front door reads none)."""
    interaction_id: str = ""
    """The ``x-fapi-interaction-id`` of a ``fapi2`` route (echoed to the client, logged)."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The identity claims of a verified access token that are passed back to the caller."""

    issuer: str = ""
    subject: str = ""
    client_id: str = ""
    scope: str = ""
    expires_at: int = 0
    jkt: str = ""
    """The token's ``cnf.jkt`` (empty for an unbound Bearer token)."""
    x5t_s256: str = ""
    """The token's ``cnf["x5t#S256"]`` as written (empty: not certificate-bound, RFC 8705)."""
    alg: str = ""
    """The JWS ``alg`` of a JWT access token (empty for an introspected token)."""
    dpop_algs: tuple[str, ...] = ()
    """Proof algorithms the token's issuer supports (its metadata's
    ``dpop_signing_alg_values_supported``, RFC 9449 §5.1); empty: no narrowing."""


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One line of the explain table: a check's name, whether it passed, and a note."""

    name: str
    passed: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer for one request.

    ``allow`` is what the caller must do. When ``enforced`` is false (report-only), ``allow``
    is true but ``reason`` holds the would-be denial. ``www_authenticate`` and ``dpop_nonce``
    are the exact header values to send back (empty: send none).
    """

    allow: bool
    reason: Reason
    message: str
    rfc_error: RfcError
    http_status: int
    www_authenticate: str = ""
    dpop_nonce: str = ""
    jkt: str = ""
    jti: str = ""
    alg: str = ""
    claims: TokenClaims | None = None
    enforced: bool = True
    checks: tuple[CheckOutcome, ...] = ()


_ALLOW = Decision(
    allow=True,
    reason=Reason.OK,
    message=CATALOGUE[Reason.OK].message,
    rfc_error=RfcError.NONE,
    http_status=200,
)

# --- The one builder of each kind of decision --------------------------------------------------


def allowed(
    *,
    dpop_nonce: str = "",
    jkt: str = "",
    jti: str = "",
    alg: str = "",
    claims: TokenClaims | None = None,
    checks: tuple[CheckOutcome, ...] = (),
) -> Decision:
    """An allow: every check passed (``jkt``, ``jti``, ``alg`` empty when no proof was needed)."""
    return replace(
        _ALLOW, dpop_nonce=dpop_nonce, jkt=jkt, jti=jti, alg=alg, claims=claims, checks=checks
    )


def denied(
    reason: Reason,
    detail: str = "",
    *,
    http_status: int | None = None,
    www_authenticate: str = "",
    dpop_nonce: str = "",
    checks: tuple[CheckOutcome, ...] = (),
) -> Decision:
    """A denial for ``reason``: the catalogue's RFC error, status and message, the message
    followed by ``detail`` when there is one. ``http_status`` overrides the catalogue's (a token
    endpoint answers 400, RFC 9449 §5)."""
    info = CATALOGUE[reason]
    return Decision(
        allow=False,
        reason=reason,
        message=f"{info.message} ({detail})" if detail else info.message,
        rfc_error=info.rfc_error,
        http_status=info.http_status if http_status is None else http_status,
        www_authenticate=www_authenticate,
        dpop_nonce=dpop_nonce,
        checks=checks,
    )


def internal_error() -> Decision:
    """The denial every front door answers when the engine itself failed."""
    return denied(Reason.INTERNAL_ERROR)
