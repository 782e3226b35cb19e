"""The checks of a DPoP proof, RFC 9449 §4.3, as small pure functions.

Each function takes plain values (``now`` included), returns a value, or raises one
:class:`~verifier.domain.reasons.Denial` with the reason code of the check that failed. The engine
calls them in the order of RFC 9449 §4.3: header syntax, signature, then claims.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import Any

from verifier.domain.reasons import Denial, Reason
from verifier.domain.uri import InvalidUri, normalize_target_uri
from verifier.dpop.request import strip_ows
from verifier.jose.rfc7515 import (
    ALGORITHMS,
    CompactJws,
    MalformedJws,
    b64url_encode,
    parse_compact,
    parse_compact_body,
    split_compact,
)
from verifier.jose.rfc7517 import has_private_members

MAX_HTM_CHARS = 32
MAX_ATH_CHARS = 128
MAX_NONCE_CHARS = 512


@dataclass(frozen=True, slots=True)
class ProofLimits:
    """Size and time limits applied to proofs."""

    max_proof_bytes: int = 8192
    max_jti_chars: int = 256
    iat_max_age: float = 60.0
    """How far in the past ``iat`` may be, in seconds."""
    iat_max_skew: float = 30.0
    """How far in the future ``iat`` may be (clock skew), in seconds. 30 s, as go-dpop and
    auth0's verifier (Duende and Spring allow 60 s): phones with drifting clocks are the
    usual clients ahead of the server. :func:`replay_ttl` grows with it."""


FAPI2_IAT_SKEW_MIN = 10.0
"""FAPI 2.0 §5.3.2.1: an ``iat`` up to 10 s in the future is accepted..."""
FAPI2_IAT_SKEW_MAX = 59.0
"""... and one 60 s or more in the future is rejected."""


def fapi2_limits(limits: ProofLimits) -> ProofLimits:
    """``limits`` with the ``iat`` skew the FAPI 2.0 profile needs: at least 10 s and less
    than 60 s (the configured skew when it lies between; :func:`replay_ttl` of the result is
    covered by that of ``limits`` with a skew of at least 10 s)."""
    skew = min(max(limits.iat_max_skew, FAPI2_IAT_SKEW_MIN), FAPI2_IAT_SKEW_MAX)
    return replace(limits, iat_max_skew=skew)


@dataclass(frozen=True, slots=True)
class ProofHeader:
    """The checked JOSE header of a proof."""

    alg: str
    jwk: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProofClaims:
    """The checked claims of a proof."""

    jti: str
    htm: str
    htu: str
    """The normalized ``htu``."""
    iat: float
    ath: str | None
    nonce: str | None


def select_single_proof(values: tuple[str, ...], max_bytes: int) -> str:
    """RFC 9449 §4.3 (1): not more than one DPoP header field, holding exactly one JWT.

    Every field counts, an empty one too: a proof beside an empty ``DPoP`` field is
    ``proof_multiple``; no field, or only empty ones, is ``proof_missing``. Only SP and HTAB
    around the value are optional white space (:func:`strip_ows`). Proxies (and Envoy's
    ext_authz) join repeated headers with a comma; a comma never occurs in a compact JWS, so a
    value containing one is two proofs.
    """
    fields = [strip_ows(value) for value in values]
    if not any(fields):
        raise Denial(Reason.PROOF_MISSING)
    if len(fields) > 1:
        raise Denial(Reason.PROOF_MULTIPLE, f"{len(fields)} DPoP headers")
    proof = fields[0]
    if len(proof) > max_bytes:
        raise Denial(Reason.PROOF_TOO_LARGE, f"{len(proof)} > {max_bytes} bytes")
    if "," in proof:
        raise Denial(Reason.PROOF_MULTIPLE, "comma-joined DPoP header")
    return proof


def parse_proof(proof: str) -> CompactJws:
    """RFC 9449 §4.3 (2): a well-formed JWT (compact JWS, JSON-object header and payload)."""
    try:
        return parse_compact(proof)
    except MalformedJws as exc:
        raise Denial(Reason.PROOF_MALFORMED, str(exc)) from exc


def split_proof(proof: str) -> tuple[str, str, str]:
    """RFC 9449 §4.3 (2), its first part: the proof's three base64url parts, not yet decoded."""
    try:
        return split_compact(proof)
    except MalformedJws as exc:
        raise Denial(Reason.PROOF_MALFORMED, str(exc)) from exc


def parse_proof_body(payload_b64: str, signature_b64: str) -> tuple[dict[str, Any], bytes]:
    """RFC 9449 §4.3 (2) for the payload and signature of a proof whose header (the first
    part) has already been parsed and checked: the decoded payload object and signature."""
    try:
        return parse_compact_body(payload_b64, signature_b64)
    except MalformedJws as exc:
        raise Denial(Reason.PROOF_MALFORMED, str(exc)) from exc


def check_header(header: dict[str, Any], allowed_algs: frozenset[str]) -> ProofHeader:
    """RFC 9449 §4.3 (4)-(7): ``typ``, ``alg``, ``crit`` and the public ``jwk``.

    The proof key is the ``jwk`` alone. Other key hints (``kid``, ``jku``, ``x5u``, ``x5c``)
    are ignored, never used to find a key: RFC 9449 does not forbid them, so they are not
    refused either.
    """
    if header.get("typ") != "dpop+jwt":  # §4.3 (4)
        raise Denial(Reason.PROOF_TYP_INVALID)
    alg = header.get("alg")
    # §4.3 (5): asymmetric, supported, allowed; never "none", never a MAC.
    if not isinstance(alg, str) or alg not in allowed_algs or alg not in ALGORITHMS:
        raise Denial(Reason.PROOF_ALG_NOT_ALLOWED)
    if "crit" in header:  # RFC 7515 §4.1.11: no extension is understood
        raise Denial(Reason.PROOF_CRIT_UNSUPPORTED)
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):  # §4.3 (7)
        raise Denial(Reason.PROOF_JWK_MISSING)
    if has_private_members(jwk):  # §4.3 (7): "does not contain a private key"
        raise Denial(Reason.PROOF_JWK_PRIVATE)
    return ProofHeader(alg=alg, jwk=jwk)


def _string_claim(payload: dict[str, Any], name: str, max_chars: int) -> str | None:
    """The claim, None when absent; present with another JSON type (``null`` too) or too long
    is ``proof_claims_invalid`` (RFC 9449 §4.2 defines ``ath`` and ``nonce`` as strings)."""
    if name not in payload:
        return None
    value = payload[name]
    if not isinstance(value, str) or len(value) > max_chars:
        raise Denial(Reason.PROOF_CLAIMS_INVALID, f"{name} must be a string of <= {max_chars}")
    return value


def check_claims(
    payload: dict[str, Any],
    *,
    method: str,
    target_uri: str,
    now: float,
    limits: ProofLimits,
) -> ProofClaims:
    """RFC 9449 §4.3 (9)-(11) and §4.2: ``jti``, ``htm``, ``htu`` and ``iat``.

    ``target_uri`` is the request's target URI; both it and ``htu`` are normalized by
    :func:`normalize_target_uri` and compared without query and fragment.
    """
    jti = payload.get("jti")  # §4.2: unique identifier, bounded here
    if not isinstance(jti, str) or not jti or len(jti) > limits.max_jti_chars:
        raise Denial(Reason.PROOF_JTI_INVALID)

    htm = _string_claim(payload, "htm", MAX_HTM_CHARS)
    if not htm or htm != method:  # §4.3 (8): case-sensitive method name
        raise Denial(Reason.PROOF_HTM_MISMATCH)

    htu = payload.get("htu")  # §4.3 (9)
    if not isinstance(htu, str):
        raise Denial(Reason.PROOF_HTU_MISMATCH, "htu missing")
    try:
        normalized_htu = normalize_target_uri(htu)
    except InvalidUri as exc:
        raise Denial(Reason.PROOF_HTU_MISMATCH, f"htu invalid: {exc}") from exc
    try:
        normalized_target = normalize_target_uri(target_uri)
    except InvalidUri as exc:
        raise Denial(Reason.PROOF_HTU_MISMATCH, f"target URI invalid: {exc}") from exc
    if normalized_htu != normalized_target:
        raise Denial(Reason.PROOF_HTU_MISMATCH)

    iat = payload.get("iat")  # §4.3 (11)
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise Denial(Reason.PROOF_IAT_INVALID)
    if iat < now - limits.iat_max_age:
        raise Denial(Reason.PROOF_IAT_TOO_OLD)
    if iat > now + limits.iat_max_skew:
        raise Denial(Reason.PROOF_IAT_IN_FUTURE)

    return ProofClaims(
        jti=jti,
        htm=htm,
        htu=normalized_htu,
        iat=float(iat),
        ath=_string_claim(payload, "ath", MAX_ATH_CHARS),
        nonce=_string_claim(payload, "nonce", MAX_NONCE_CHARS),
    )


def access_token_hash(access_token: str) -> str:
    """The ``ath`` value of an access token: base64url(SHA-256(ASCII token)) (§4.2)."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def check_ath(claims: ProofClaims, access_token: str) -> None:
    """RFC 9449 §4.3 (12): with an access token, ``ath`` must be its hash."""
    if claims.ath is None:
        raise Denial(Reason.PROOF_ATH_MISSING)
    if not hmac.compare_digest(claims.ath.encode(), access_token_hash(access_token).encode()):
        raise Denial(Reason.PROOF_ATH_MISMATCH)


def check_binding(token_jkt: str, proof_jkt: str) -> None:
    """RFC 9449 §6.1, §7.1: the token's ``cnf.jkt`` is the thumbprint of the proof's key."""
    if not hmac.compare_digest(token_jkt.encode(), proof_jkt.encode()):
        raise Denial(Reason.JKT_MISMATCH)


def replay_ttl(limits: ProofLimits) -> float:
    """How long a proof must be remembered: until no clock can accept it any more.

    A proof is acceptable while ``now - max_age <= iat <= now + skew``; the latest ``iat``
    accepted at first use is ``now + skew``, which stays acceptable for ``max_age`` more.
    One extra second covers ``iat`` rounding.
    """
    return limits.iat_max_age + limits.iat_max_skew + 1.0


def replay_key(jkt: str, htu: str, jti: str) -> bytes:
    """The replay-store key of a proof: SHA-256 over length-prefixed (jkt, htu, jti).

    Bounded in size whatever the inputs, and scoped by key and URI so that two clients (or two
    tenants) choosing the same ``jti`` never collide.
    """
    digest = hashlib.sha256()
    for part in (jkt, htu, jti):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(4, "big"))
        digest.update(data)
    return digest.digest()
