"""The closed catalogue of decision reasons.

Every denial the service can produce has exactly one entry here: a stable code (the enum value,
which is also the name of the matching value in the ``dpop.verifier.v1.Reason`` proto enum), the
RFC error it maps to, the HTTP status a resource server should answer with, and a short,
header-safe human message. Callers branch on the code, never on the message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RfcError(enum.StrEnum):
    """The ``error`` values of RFC 6750 §3.1 and RFC 9449 §7.1 / §8 / §9."""

    NONE = ""
    INVALID_REQUEST = "invalid_request"
    INVALID_TOKEN = "invalid_token"
    INVALID_DPOP_PROOF = "invalid_dpop_proof"
    USE_DPOP_NONCE = "use_dpop_nonce"


class Reason(enum.StrEnum):
    """Why a request was allowed or denied. The value is the stable, documented code."""

    OK = "ok"

    # --- The Authorization header (RFC 6750, RFC 9449 §7.1, §7.2) ---
    AUTHORIZATION_MISSING = "authorization_missing"
    """No Authorization header: the client is challenged without an error code (RFC 6750 §3.1)."""
    AUTHORIZATION_MULTIPLE = "authorization_multiple"
    """More than one Authorization header value, or two credentials joined with a comma by a
    proxy (a ``DPoP``/``Bearer`` value with a comma; another scheme's value with a comma not
    followed by an auth-param)."""
    AUTHORIZATION_MALFORMED = "authorization_malformed"
    """The Authorization header is neither ``<scheme> <token68>`` nor ``<scheme> <auth-params>``
    (RFC 9110 §11.6.2); ``DPoP`` and ``Bearer`` take a token68 only."""
    AUTHORIZATION_SCHEME_UNSUPPORTED = "authorization_scheme_unsupported"
    """The scheme is neither ``DPoP`` nor (where the route policy allows it) ``Bearer``."""
    BEARER_NOT_ALLOWED = "bearer_not_allowed"
    """A ``Bearer`` token where the route policy requires DPoP."""
    TOKEN_BOUND_SENT_AS_BEARER = "token_bound_sent_as_bearer"
    """A DPoP-bound token (``cnf.jkt``) presented with the ``Bearer`` scheme: a downgrade (§7.2)."""

    # --- The DPoP header and the proof JWS (RFC 9449 §4.2, §4.3) ---
    PROOF_MISSING = "proof_missing"
    """No DPoP header where one is required."""
    PROOF_MULTIPLE = "proof_multiple"
    """More than one DPoP header value, or one containing a comma (§4.3 check 1)."""
    PROOF_TOO_LARGE = "proof_too_large"
    """The DPoP header exceeds the configured size limit."""
    PROOF_MALFORMED = "proof_malformed"
    """Not a compact JWS of three base64url parts whose header and payload are JSON objects."""
    PROOF_TYP_INVALID = "proof_typ_invalid"
    """The JOSE header ``typ`` is not ``dpop+jwt``."""
    PROOF_ALG_NOT_ALLOWED = "proof_alg_not_allowed"
    """``alg`` is missing, symmetric, ``none`` or not in the configured allowlist."""
    PROOF_CRIT_UNSUPPORTED = "proof_crit_unsupported"
    """The JOSE header carries ``crit``: no critical extension is understood."""
    PROOF_JWK_MISSING = "proof_jwk_missing"
    """The JOSE header has no ``jwk`` object."""
    PROOF_JWK_PRIVATE = "proof_jwk_private"
    """The ``jwk`` contains private key members (``d``, ``p``, ``q``, ...)."""
    PROOF_JWK_INVALID = "proof_jwk_invalid"
    """The ``jwk`` is not a valid public key of the type and curve that ``alg`` requires."""
    PROOF_SIGNATURE_INVALID = "proof_signature_invalid"
    """The signature does not verify with the embedded ``jwk``."""
    PROOF_CLAIMS_INVALID = "proof_claims_invalid"
    """A proof claim has the wrong JSON type or exceeds its size limit (a ``nonce`` or ``ath``
    that is not a string is refused even where no nonce is required)."""
    PROOF_JTI_INVALID = "proof_jti_invalid"
    """``jti`` is missing, empty or longer than the configured limit."""
    PROOF_HTM_MISMATCH = "proof_htm_mismatch"
    """``htm`` is missing or differs from the request method."""
    PROOF_HTU_MISMATCH = "proof_htu_mismatch"
    """``htu`` is missing, not an absolute http(s) URI, or differs from the target URI."""
    PROOF_IAT_INVALID = "proof_iat_invalid"
    """``iat`` is missing or not a number."""
    PROOF_IAT_TOO_OLD = "proof_iat_too_old"
    """``iat`` is older than the acceptance window."""
    PROOF_IAT_IN_FUTURE = "proof_iat_in_future"
    """``iat`` is further in the future than the allowed clock skew."""
    PROOF_ATH_MISSING = "proof_ath_missing"
    """An access token is presented but the proof has no ``ath``."""
    PROOF_ATH_MISMATCH = "proof_ath_mismatch"
    """``ath`` is not the base64url SHA-256 of the presented access token."""
    NONCE_REQUIRED = "nonce_required"
    """The server requires a nonce and the proof has none (§8, §9)."""
    NONCE_INVALID = "nonce_invalid"
    """The nonce was not issued by this service (bad format or MAC)."""
    NONCE_EXPIRED = "nonce_expired"
    """The nonce was issued by this service but is outside its validity window."""
    REPLAYED = "replayed"
    """This proof (key, htu, jti) was already accepted inside its window (§11.1)."""

    # --- The access token (RFC 9068, RFC 9449 §6, §7) ---
    TOKEN_TOO_LARGE = "token_too_large"
    """The access token exceeds the configured size limit."""
    TOKEN_MALFORMED = "token_malformed"
    """The access token is not a well-formed JWT, its JOSE ``typ`` is not one its issuer uses for
    access tokens (``at+jwt`` by default, RFC 9068 §4), or it is a DPoP proof."""
    TOKEN_ALG_NOT_ALLOWED = "token_alg_not_allowed"
    """The access token's ``alg`` is not allowed for its issuer."""
    TOKEN_ISSUER_UNKNOWN = "token_issuer_unknown"
    """``iss`` is missing or not a configured trusted issuer."""
    TOKEN_KEY_UNKNOWN = "token_key_unknown"
    """No key of the issuer matches the token (``kid`` unknown after a refresh)."""
    TOKEN_SIGNATURE_INVALID = "token_signature_invalid"
    """The access token's signature does not verify."""
    TOKEN_EXPIRED = "token_expired"
    """``exp`` is in the past (beyond the allowed skew), or missing."""
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    """``nbf`` (or ``iat``) is in the future beyond the allowed skew."""
    TOKEN_AUDIENCE_INVALID = "token_audience_invalid"
    """``aud`` does not contain the issuer's configured audience."""
    TOKEN_CLAIMS_INVALID = "token_claims_invalid"
    """A token claim has the wrong type (for example ``cnf`` not an object), a date claim
    (``exp``, ``nbf``, ``iat``) lies outside the years 1 to 9999, a JWT access token has no
    ``iat`` (RFC 9068 §2.2), or an introspection answer contradicts itself (``token_type``
    ``DPoP`` without ``cnf.jkt``, or the reverse)."""
    TOKEN_NOT_BOUND = "token_not_bound"
    """The token presented with the ``DPoP`` scheme has no ``cnf.jkt``."""
    JKT_MISMATCH = "jkt_mismatch"
    """The token's ``cnf.jkt`` is not the thumbprint of the proof's key (§6.1)."""

    # --- Faults: fail closed ---
    KEY_SOURCE_UNAVAILABLE = "key_source_unavailable"
    """The issuer's keys cannot be obtained and none are cached."""
    REPLAY_STORE_UNAVAILABLE = "replay_store_unavailable"
    """The replay store did not answer in time: the proof cannot be proven fresh."""
    INTERNAL_ERROR = "internal_error"
    """An unexpected fault: denied rather than allowed."""
    REQUEST_INVALID = "request_invalid"
    """The request's method or target URI is unusable (empty, not an HTTP method token, not an
    absolute http(s) URI, a host with userinfo, an absolute-form path): the client's mistake,
    or the gateway's, answered 400 without a challenge and logged like other denials."""

    # --- Opaque tokens (RFC 7662, RFC 9449 §6.2); appended to keep the wire numbers stable ---
    TOKEN_INACTIVE = "token_inactive"
    """The issuer's introspection endpoint says the token is not active (RFC 7662 §2.2)."""
    INTROSPECTION_UNAVAILABLE = "introspection_unavailable"
    """The issuer's introspection endpoint gave no usable answer: the token cannot be checked."""

    # --- Certificate-bound tokens (RFC 8705) and the FAPI 2.0 profile; appended likewise ---
    CLIENT_CERTIFICATE_MISSING = "client_certificate_missing"
    """The token is certificate-bound (``cnf["x5t#S256"]``) but no client certificate reached
    the verifier (none in the TLS handshake, or the front door is not set to read one)."""
    CLIENT_CERTIFICATE_INVALID = "client_certificate_invalid"
    """What the proxy forwarded as the client certificate is not one in the declared format, or
    exceeds a size bound. A proxy's fault, answered like a missing certificate (401
    ``invalid_token``): the request is not authenticated either way, and the code says why."""
    CLIENT_CERTIFICATE_MISMATCH = "client_certificate_mismatch"
    """The client certificate is not the one the token's ``cnf["x5t#S256"]`` names, or that
    value is not unpadded base64url of 32 bytes (RFC 8705 §3)."""
    CLIENT_CERTIFICATE_UNTRUSTED = "client_certificate_untrusted"
    """The certificate came through no trusted proxy (no XFCC element with a configured ``By=``),
    or fails the optional CA-chain policy."""
    TOKEN_NOT_CERTIFICATE_BOUND = "token_not_certificate_bound"
    """The route requires mutual-TLS sender constraint and the token has no
    ``cnf["x5t#S256"]`` (RFC 8705 §3)."""
    TOKEN_NOT_SENDER_CONSTRAINED = "token_not_sender_constrained"
    """The route accepts a DPoP- or certificate-bound token (``either``, or the FAPI 2.0
    profile) and the token is bound neither way (FAPI 2.0 §5.3.4)."""
    TOKEN_IN_QUERY = "token_in_query"
    """The FAPI 2.0 profile: the request URI carries an ``access_token`` query parameter
    (FAPI 2.0 §5.3.4, RFC 6750 §2.3); tokens travel in the Authorization header only."""
    TOKEN_ISSUER_NOT_ALLOWED = "token_issuer_not_allowed"
    """The token's issuer is trusted, but not in the route's ``issuers`` allow-list."""


class GrpcCode(enum.IntEnum):
    """The ``google.rpc.Code`` values a denial maps to (Envoy's ``CheckResponse.status``); the
    numbers are the wire values (checked against ``google.rpc.code_pb2`` by the tests)."""

    OK = 0
    INVALID_ARGUMENT = 3
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    """How one reason is reported on every wire: the RFC error code (``WWW-Authenticate`` and
    the JSON body), the HTTP status, the gRPC status of an ext_authz denial, whether the client
    gets a challenge (``WWW-Authenticate``: the reasons that are not about the client's
    credentials get none), and the human message."""

    rfc_error: RfcError
    http_status: int
    grpc_code: GrpcCode
    challenge: bool
    message: str


_PROOF = RfcError.INVALID_DPOP_PROOF
_TOKEN = RfcError.INVALID_TOKEN
_REQUEST = RfcError.INVALID_REQUEST
_NONCE = RfcError.USE_DPOP_NONCE
_NONE = RfcError.NONE
_OK = GrpcCode.OK
_INVALID = GrpcCode.INVALID_ARGUMENT
_UNAUTHENTICATED = GrpcCode.UNAUTHENTICATED
_INTERNAL = GrpcCode.INTERNAL
_UNAVAILABLE = GrpcCode.UNAVAILABLE
_CHALLENGE = True
_NO_CHALLENGE = False

# One row a reason: every wire's answer for it, read by every front door.
# fmt: off
CATALOGUE: dict[Reason, ReasonInfo] = {
    Reason.OK: ReasonInfo(
        _NONE, 200, _OK, _NO_CHALLENGE, "DPoP proof and access token are valid"
    ),
    Reason.AUTHORIZATION_MISSING: ReasonInfo(
        _NONE, 401, _UNAUTHENTICATED, _CHALLENGE, "Authorization required"
    ),
    Reason.AUTHORIZATION_MULTIPLE: ReasonInfo(
        _REQUEST, 400, _INVALID, _CHALLENGE, "More than one Authorization header"
    ),
    Reason.AUTHORIZATION_MALFORMED: ReasonInfo(
        _REQUEST, 400, _INVALID, _CHALLENGE, "Malformed Authorization header"
    ),
    Reason.AUTHORIZATION_SCHEME_UNSUPPORTED: ReasonInfo(
        _NONE, 401, _UNAUTHENTICATED, _CHALLENGE, "Unsupported authorization scheme"
    ),
    Reason.BEARER_NOT_ALLOWED: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP-bound access token required"
    ),
    Reason.TOKEN_BOUND_SENT_AS_BEARER: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP-bound access token presented as Bearer"
    ),
    Reason.PROOF_MISSING: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof missing"
    ),
    Reason.PROOF_MULTIPLE: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "More than one DPoP proof"
    ),
    Reason.PROOF_TOO_LARGE: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof too large"
    ),
    Reason.PROOF_MALFORMED: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof is not a well-formed JWS"
    ),
    Reason.PROOF_TYP_INVALID: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof typ must be dpop+jwt"
    ),
    Reason.PROOF_ALG_NOT_ALLOWED: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof alg not allowed"
    ),
    Reason.PROOF_CRIT_UNSUPPORTED: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof crit not supported"
    ),
    Reason.PROOF_JWK_MISSING: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof jwk missing"
    ),
    Reason.PROOF_JWK_PRIVATE: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof jwk contains a private key"
    ),
    Reason.PROOF_JWK_INVALID: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof jwk invalid for alg"
    ),
    Reason.PROOF_SIGNATURE_INVALID: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof signature invalid"
    ),
    Reason.PROOF_CLAIMS_INVALID: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof claims invalid"
    ),
    Reason.PROOF_JTI_INVALID: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof jti missing or invalid"
    ),
    Reason.PROOF_HTM_MISMATCH: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof htm does not match"
    ),
    Reason.PROOF_HTU_MISMATCH: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof htu does not match"
    ),
    Reason.PROOF_IAT_INVALID: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof iat missing or invalid"
    ),
    Reason.PROOF_IAT_TOO_OLD: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof iat too old"
    ),
    Reason.PROOF_IAT_IN_FUTURE: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof iat in the future"
    ),
    Reason.PROOF_ATH_MISSING: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof ath missing"
    ),
    Reason.PROOF_ATH_MISMATCH: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof ath does not match"
    ),
    Reason.NONCE_REQUIRED: ReasonInfo(
        _NONCE, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP nonce required"
    ),
    Reason.NONCE_INVALID: ReasonInfo(
        _NONCE, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP nonce invalid"
    ),
    Reason.NONCE_EXPIRED: ReasonInfo(
        _NONCE, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP nonce expired"
    ),
    Reason.REPLAYED: ReasonInfo(
        _PROOF, 401, _UNAUTHENTICATED, _CHALLENGE, "DPoP proof replayed"
    ),
    Reason.TOKEN_TOO_LARGE: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token too large"
    ),
    Reason.TOKEN_MALFORMED: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token malformed"
    ),
    Reason.TOKEN_ALG_NOT_ALLOWED: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token alg not allowed"
    ),
    Reason.TOKEN_ISSUER_UNKNOWN: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token issuer not trusted"
    ),
    Reason.TOKEN_KEY_UNKNOWN: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token signing key unknown"
    ),
    Reason.TOKEN_SIGNATURE_INVALID: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token signature invalid"
    ),
    Reason.TOKEN_EXPIRED: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token expired"
    ),
    Reason.TOKEN_NOT_YET_VALID: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token not yet valid"
    ),
    Reason.TOKEN_AUDIENCE_INVALID: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token audience invalid"
    ),
    Reason.TOKEN_CLAIMS_INVALID: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token claims invalid"
    ),
    Reason.TOKEN_NOT_BOUND: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token is not DPoP-bound"
    ),
    Reason.JKT_MISMATCH: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Invalid DPoP key binding"
    ),
    Reason.KEY_SOURCE_UNAVAILABLE: ReasonInfo(
        _NONE, 503, _UNAVAILABLE, _NO_CHALLENGE, "Issuer keys unavailable"
    ),
    Reason.REPLAY_STORE_UNAVAILABLE: ReasonInfo(
        _NONE, 503, _UNAVAILABLE, _NO_CHALLENGE, "Replay store unavailable"
    ),
    Reason.INTERNAL_ERROR: ReasonInfo(
        _NONE, 500, _INTERNAL, _NO_CHALLENGE, "Internal error"
    ),
    Reason.REQUEST_INVALID: ReasonInfo(
        _REQUEST, 400, _INVALID, _NO_CHALLENGE, "Invalid request method or target URI"
    ),
    Reason.TOKEN_INACTIVE: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token is not active"
    ),
    Reason.INTROSPECTION_UNAVAILABLE: ReasonInfo(
        _NONE, 503, _UNAVAILABLE, _NO_CHALLENGE, "Token introspection unavailable"
    ),
    Reason.CLIENT_CERTIFICATE_MISSING: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Client certificate required"
    ),
    Reason.CLIENT_CERTIFICATE_INVALID: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Client certificate unreadable"
    ),
    Reason.CLIENT_CERTIFICATE_MISMATCH: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Invalid certificate binding"
    ),
    Reason.CLIENT_CERTIFICATE_UNTRUSTED: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Client certificate not trusted"
    ),
    Reason.TOKEN_NOT_CERTIFICATE_BOUND: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Certificate-bound access token required"
    ),
    Reason.TOKEN_NOT_SENDER_CONSTRAINED: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Sender-constrained access token required"
    ),
    Reason.TOKEN_IN_QUERY: ReasonInfo(
        _REQUEST, 400, _INVALID, _CHALLENGE, "Access token in the query not allowed"
    ),
    Reason.TOKEN_ISSUER_NOT_ALLOWED: ReasonInfo(
        _TOKEN, 401, _UNAUTHENTICATED, _CHALLENGE, "Access token issuer not allowed here"
    ),
}
# fmt: on


class Denial(Exception):
    """Raised by a pure check: the request is denied for ``reason``.

    ``detail`` adds context for logs and the explain table; it never contains a token or proof.
    """

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(reason.value if not detail else f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def info(reason: Reason) -> ReasonInfo:
    """Return how ``reason`` is reported on the wire."""
    return CATALOGUE[reason]
