"""Builders shared by the unit tests: keys, proofs, access tokens and a wired engine.

Keys are generated once per test session (RSA generation is slow). Every builder takes the
fixed instant :data:`NOW`, so that tests never depend on the wall clock.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from verifier.cli import mint
from verifier.domain.model import Decision, Policy, RequestFacts
from verifier.domain.ports import ReplayStore, ReplayStoreUnavailable
from verifier.domain.reasons import CATALOGUE, Reason
from verifier.dpop.proof import access_token_hash
from verifier.engine.pipeline import EngineSettings, Verifier
from verifier.jose.rfc7515 import b64url_decode, b64url_encode
from verifier.replay.memory import MemoryReplayStore
from verifier.tokens.jwks import parse_jwks
from verifier.tokens.sources import StaticKeySource
from verifier.tokens.validator import TokenValidator, TrustedIssuer

NOW = 1_700_000_000
ISSUER = "https://as.example.com"
AUDIENCE = "https://api.example.com"
ISSUER_KID = "as-key-1"
RESOURCE_URL = "https://api.example.com/orders/42"
TOKEN_URL = "https://as.example.com/token"

DROP: Any = object()
"""Pass as a member's value to remove that member from a header or payload."""


class FakeClock:
    """A settable clock for the engine and the replay store."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


# --- keys ---------------------------------------------------------------------------------


@functools.cache
def _rsa_key(bits: int, index: int) -> mint.KeyPair:
    return mint.generate_key("RS256", rsa_bits=bits)


@functools.cache
def key(alg: str = "ES256", index: int = 0) -> mint.KeyPair:
    """The ``index``-th test key for ``alg``; RS* and PS* of one index share an RSA key."""
    if alg[:2] in ("RS", "PS"):
        return replace(_rsa_key(2048, index), alg=alg)
    if alg == "EdDSA":
        return replace(key("Ed25519", index), alg="EdDSA")
    return mint.generate_key(alg)


def small_rsa_key() -> mint.KeyPair:
    """A 1024-bit RSA key: too small for a proof."""
    return _rsa_key(1024, 0)


def proof_key() -> mint.KeyPair:
    """The client's proof key in most tests."""
    return key("ES256", 0)


def issuer_key() -> mint.KeyPair:
    """The authorization server's token signing key."""
    return key("ES256", 1)


# --- JWS ------------------------------------------------------------------------------------


def sign_raw(header: bytes, payload: bytes, signer: mint.KeyPair) -> str:
    """A compact JWS over the exact ``header`` and ``payload`` octets (for malformed JSON)."""
    signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}"
    signature = mint.sign(signer.alg, signer.private_key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def sign_jws(header: dict[str, Any], payload: dict[str, Any], signer: mint.KeyPair) -> str:
    """A compact JWS of ``header`` and ``payload`` (any JSON values) signed by ``signer``."""
    return sign_raw(json.dumps(header).encode(), json.dumps(payload).encode(), signer)


def flip_signature_bit(jws: str, bit: int = 0) -> str:
    """The same JWS with one bit of its signature inverted."""
    head, payload, signature = jws.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[bit // 8] ^= 1 << (bit % 8)
    return f"{head}.{payload}.{b64url_encode(bytes(raw))}"


def with_members(members: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``members`` with ``overrides`` applied: a value replaces a member, DROP removes it."""
    for name, value in (overrides or {}).items():
        if value is DROP:
            members.pop(name, None)
        else:
            members[name] = value
    return members


_jti_counter = itertools.count()


def unique_jti() -> str:
    return f"jti-{next(_jti_counter)}"


def make_proof(
    signer: mint.KeyPair | None = None,
    *,
    method: str = "GET",
    url: str = RESOURCE_URL,
    iat: float = NOW,
    jti: str | None = None,
    access_token: str | None = None,
    nonce: str | None = None,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
) -> str:
    """A DPoP proof; ``header`` and ``claims`` override (or :data:`DROP`) single members."""
    signer = signer or proof_key()
    jose_header = with_members(
        {"typ": "dpop+jwt", "alg": signer.alg, "jwk": signer.public_jwk}, header
    )
    payload: dict[str, Any] = {"jti": jti or unique_jti(), "htm": method, "htu": url, "iat": iat}
    if access_token is not None:
        payload["ath"] = access_token_hash(access_token)
    if nonce is not None:
        payload["nonce"] = nonce
    return sign_jws(jose_header, with_members(payload, claims), signer)


def make_token(
    *,
    jkt: str | None = None,
    bound: bool = True,
    signer: mint.KeyPair | None = None,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    now: float = NOW,
) -> str:
    """A JWT access token of :data:`ISSUER` for :data:`AUDIENCE`, bound to the proof key."""
    signer = signer or issuer_key()
    jose_header = with_members({"typ": "at+jwt", "alg": signer.alg, "kid": ISSUER_KID}, header)
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "client_id": "client-1",
        "scope": "orders:read",
        "iat": int(now),
        "exp": int(now) + 300,
        "jti": unique_jti(),
    }
    if bound:
        payload["cnf"] = {"jkt": jkt or proof_key().jkt}
    return sign_jws(jose_header, with_members(payload, claims), signer)


# --- the engine -----------------------------------------------------------------------------


class UnavailableReplayStore:
    """Test double: a replay store that never answers."""

    def first_use(self, key: bytes, ttl_seconds: float) -> bool:
        raise ReplayStoreUnavailable("test: store down")

    def ping(self) -> bool:
        return False

    def close(self) -> None:
        return None


class BrokenReplayStore(UnavailableReplayStore):
    """Test double: a replay store with a bug (an unexpected exception)."""

    def first_use(self, key: bytes, ttl_seconds: float) -> bool:
        raise RuntimeError("test: unexpected fault")


def trusted_issuer(**overrides: Any) -> TrustedIssuer:
    """:data:`ISSUER` with :func:`issuer_key` published as :data:`ISSUER_KID`."""
    source = StaticKeySource(parse_jwks(mint.jwks_for(issuer_key(), kid=ISSUER_KID)))
    fields: dict[str, Any] = {"issuer": ISSUER, "source": source, "audience": AUDIENCE}
    fields.update(overrides)
    return TrustedIssuer(**fields)


def make_verifier(
    *,
    clock: Callable[[], float] | None = None,
    replay: ReplayStore | None = None,
    issuers: tuple[TrustedIssuer, ...] | None = None,
    tokens: Any = None,
    **settings: Any,
) -> Verifier:
    """An engine over the default settings (overridable), trusting :func:`trusted_issuer`."""
    clock = clock or FakeClock()
    validator = tokens or TokenValidator(issuers or (trusted_issuer(),))
    return Verifier(
        EngineSettings(**settings),
        tokens=validator,
        replay=replay if replay is not None else MemoryReplayStore(clock=clock),
        clock=clock,
    )


def resource_facts(
    *,
    token: str | None = None,
    proof: str | None = None,
    scheme: str = "DPoP",
    method: str = "GET",
    url: str = RESOURCE_URL,
    policy: Policy | None = None,
    authorization: tuple[str, ...] | None = None,
    dpop: tuple[str, ...] | None = None,
) -> RequestFacts:
    """A resource request; by default a valid DPoP request with a bound token."""
    token = token if token is not None else make_token()
    if proof is None:
        proof = make_proof(method=method, url=url, access_token=token)
    return RequestFacts(
        method=method,
        target_uri=url,
        authorization=authorization if authorization is not None else (f"{scheme} {token}",),
        dpop=dpop if dpop is not None else (proof,),
        policy=policy or Policy(),
    )


def token_request_facts(
    proof: str, *, url: str = TOKEN_URL, policy: Policy | None = None
) -> RequestFacts:
    """A token request (proof-only mode, RFC 9449 §5)."""
    return RequestFacts(
        method="POST", target_uri=url, dpop=(proof,), proof_only=True, policy=policy or Policy()
    )


def assert_denied(decision: Decision, reason: Reason) -> None:
    """``decision`` is an enforced denial for ``reason``, reported as the catalogue says."""
    assert (decision.reason, decision.allow) == (reason, False), decision.message
    assert decision.enforced
    assert decision.rfc_error == CATALOGUE[reason].rfc_error
    assert decision.jkt == "" and decision.claims is None


def assert_allowed(decision: Decision) -> None:
    assert (decision.reason, decision.allow, decision.enforced) == (Reason.OK, True, True), (
        decision.message
    )
    assert decision.http_status == 200 and decision.www_authenticate == ""
