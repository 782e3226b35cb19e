"""The decision engine: every reason from a real bad input; modes, nonces, replay, faults."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.unit.helpers import (
    DROP,
    ISSUER,
    NOW,
    RESOURCE_URL,
    TOKEN_URL,
    BrokenReplayStore,
    FakeClock,
    UnavailableReplayStore,
    assert_allowed,
    assert_denied,
    flip_signature_bit,
    key,
    make_proof,
    make_token,
    make_verifier,
    proof_key,
    resource_facts,
    small_rsa_key,
    token_request_facts,
    trusted_issuer,
)
from tests.unit.test_engine_mtls import MTLS_CASES
from verifier.domain.model import Decision, Mode, Policy, RequestFacts
from verifier.domain.reasons import CATALOGUE, Reason
from verifier.dpop.challenge import dpop_challenge
from verifier.dpop.nonce import NonceKeys, issue_nonce
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS, b64url_encode
from verifier.replay.memory import MemoryReplayStore
from verifier.tokens.sources import RemoteKeySource

NONCE_KEYS = NonceKeys(current=b"n" * 32)
NONCE_POLICY = Policy(nonce_required=True)
FAULTS = {
    Reason.KEY_SOURCE_UNAVAILABLE,
    Reason.REPLAY_STORE_UNAVAILABLE,
    Reason.INTERNAL_ERROR,
    Reason.REQUEST_INVALID,
}


def _expected_challenge(reason: Reason, algs: tuple[str, ...] = DEFAULT_PROOF_ALGS) -> str:
    if reason in FAULTS:
        return ""
    info = CATALOGUE[reason]
    return dpop_challenge(info.rfc_error, info.message, algs)


def _decide(facts: RequestFacts, **env: Any) -> Decision:
    return make_verifier(**env).verify(facts)


def _with_token(token: str, **proof: Any) -> RequestFacts:
    """A DPoP request carrying ``token`` and a valid proof for it (``proof`` overrides)."""
    return resource_facts(token=token, proof=make_proof(access_token=token, **proof))


def _proof_with(**overrides: Any) -> RequestFacts:
    """A DPoP request with a good token and a proof built with ``overrides``."""
    token = make_token()
    return resource_facts(token=token, proof=make_proof(access_token=token, **overrides))


def _replayed() -> Decision:
    verifier = make_verifier()
    facts = resource_facts()
    assert_allowed(verifier.verify(facts))
    return verifier.verify(facts)


def _failing_key_source() -> Decision:
    def down(url: str) -> Any:
        raise OSError("down")

    source = RemoteKeySource("https://as.example.com/jwks", fetcher=down)
    return _decide(resource_facts(), issuers=(trusted_issuer(source=source),))


@dataclass(frozen=True)
class Case:
    why: str
    reason: Reason
    run: Callable[[], Awaitable[Decision]]
    algs: tuple[str, ...] = DEFAULT_PROOF_ALGS


def case(why: str, reason: Reason, facts: Callable[[], RequestFacts], **env: Any) -> Case:
    algs = env.get("proof_algs", DEFAULT_PROOF_ALGS)
    return Case(why, reason, lambda: _decide(facts(), **env), algs)


GOOD_TOKEN = make_token()
UNBOUND = make_token(bound=False)

CASES = [
    # Authorization header
    case(
        "no Authorization", Reason.AUTHORIZATION_MISSING, lambda: resource_facts(authorization=())
    ),
    case(
        "two Authorization",
        Reason.AUTHORIZATION_MULTIPLE,
        lambda: resource_facts(authorization=(f"DPoP {GOOD_TOKEN}",) * 2),
    ),
    case(
        "comma-joined Authorization",
        Reason.AUTHORIZATION_MULTIPLE,
        lambda: resource_facts(authorization=(f"DPoP {GOOD_TOKEN}, DPoP {GOOD_TOKEN}",)),
    ),
    case(
        "scheme only",
        Reason.AUTHORIZATION_MALFORMED,
        lambda: resource_facts(authorization=("DPoP",)),
    ),
    case(
        "two tokens",
        Reason.AUTHORIZATION_MALFORMED,
        lambda: resource_facts(authorization=("DPoP a b",)),
    ),
    case(
        "Basic",
        Reason.AUTHORIZATION_SCHEME_UNSUPPORTED,
        lambda: resource_facts(authorization=("Basic dXNlcjpwYXNz",)),
    ),
    case(
        "huge Authorization",
        Reason.TOKEN_TOO_LARGE,
        lambda: resource_facts(authorization=("DPoP " + "a" * 16385,)),
    ),
    # Bearer under the default (require) policy
    case(
        "unbound Bearer token",
        Reason.BEARER_NOT_ALLOWED,
        lambda: resource_facts(token=UNBOUND, scheme="Bearer", dpop=()),
    ),
    case(
        "invalid Bearer token",
        Reason.BEARER_NOT_ALLOWED,
        lambda: resource_facts(token="opaque", scheme="Bearer", dpop=()),
    ),
    case(
        "bound token as Bearer",
        Reason.TOKEN_BOUND_SENT_AS_BEARER,
        lambda: resource_facts(scheme="Bearer", dpop=()),
    ),
    case(
        "bound token as Bearer with a proof",
        Reason.TOKEN_BOUND_SENT_AS_BEARER,
        lambda: resource_facts(scheme="Bearer"),
    ),
    case(
        "bound token as Bearer on an allow-bearer route",
        Reason.TOKEN_BOUND_SENT_AS_BEARER,
        lambda: resource_facts(scheme="Bearer", dpop=(), policy=Policy(mode=Mode.ALLOW_BEARER)),
    ),
    # The DPoP header
    case("no DPoP header", Reason.PROOF_MISSING, lambda: resource_facts(dpop=())),
    case("blank DPoP header", Reason.PROOF_MISSING, lambda: resource_facts(dpop=("",))),
    case(
        "two DPoP headers",
        Reason.PROOF_MULTIPLE,
        lambda: resource_facts(dpop=(make_proof(), make_proof())),
    ),
    case(
        "comma-joined DPoP",
        Reason.PROOF_MULTIPLE,
        lambda: resource_facts(dpop=(f"{make_proof()},{make_proof()}",)),
    ),
    case("huge DPoP header", Reason.PROOF_TOO_LARGE, lambda: resource_facts(dpop=("e" * 8193,))),
    # The proof JWS
    case(
        "proof of two parts",
        Reason.PROOF_MALFORMED,
        lambda: resource_facts(proof=make_proof().rsplit(".", 1)[0]),
    ),
    case("proof padded", Reason.PROOF_MALFORMED, lambda: resource_facts(proof=make_proof() + "==")),
    case("typ jwt", Reason.PROOF_TYP_INVALID, lambda: _proof_with(header={"typ": "jwt"})),
    case("typ missing", Reason.PROOF_TYP_INVALID, lambda: _proof_with(header={"typ": DROP})),
    case("alg none", Reason.PROOF_ALG_NOT_ALLOWED, lambda: _proof_with(header={"alg": "none"})),
    case("alg HS256", Reason.PROOF_ALG_NOT_ALLOWED, lambda: _proof_with(header={"alg": "HS256"})),
    case("alg unknown", Reason.PROOF_ALG_NOT_ALLOWED, lambda: _proof_with(header={"alg": "XS256"})),
    case(
        "Ed448 not in the defaults",
        Reason.PROOF_ALG_NOT_ALLOWED,
        lambda: _proof_with(signer=key("Ed448")),
    ),
    case(
        "ES384 not configured",
        Reason.PROOF_ALG_NOT_ALLOWED,
        lambda: _proof_with(signer=key("ES384")),
        proof_algs=("ES256",),
    ),
    case(
        "crit",
        Reason.PROOF_CRIT_UNSUPPORTED,
        lambda: _proof_with(header={"crit": ["b64"], "b64": False}),
    ),
    case("jwk missing", Reason.PROOF_JWK_MISSING, lambda: _proof_with(header={"jwk": DROP})),
    case("jwk not an object", Reason.PROOF_JWK_MISSING, lambda: _proof_with(header={"jwk": "key"})),
    case(
        "jwk private",
        Reason.PROOF_JWK_PRIVATE,
        lambda: _proof_with(header={"jwk": proof_key().private_jwk()}),
    ),
    case(
        "jwk RSA under ES256",
        Reason.PROOF_JWK_INVALID,
        lambda: _proof_with(header={"jwk": key("RS256").public_jwk}),
    ),
    case(
        "P-384 key under ES256",
        Reason.PROOF_JWK_INVALID,
        lambda: _proof_with(header={"jwk": key("ES384").public_jwk}),
    ),
    case(
        "point not on curve",
        Reason.PROOF_JWK_INVALID,
        lambda: _proof_with(
            header={"jwk": {**proof_key().public_jwk, "y": proof_key().public_jwk["x"]}}
        ),
    ),
    case(
        "short coordinate",
        Reason.PROOF_JWK_INVALID,
        lambda: _proof_with(
            header={"jwk": {**proof_key().public_jwk, "x": b64url_encode(b"\1" * 31)}}
        ),
    ),
    case("RSA 1024", Reason.PROOF_JWK_INVALID, lambda: _proof_with(signer=small_rsa_key())),
    case(
        "jwk kty unknown",
        Reason.PROOF_JWK_INVALID,
        lambda: _proof_with(header={"jwk": {"kty": "XYZ"}}),
    ),
    case(
        "signature bit flipped",
        Reason.PROOF_SIGNATURE_INVALID,
        lambda: resource_facts(
            token=GOOD_TOKEN, proof=flip_signature_bit(make_proof(access_token=GOOD_TOKEN), 7)
        ),
    ),
    case(
        "signed by another key",
        Reason.PROOF_SIGNATURE_INVALID,
        lambda: _proof_with(signer=key("ES256", 2), header={"jwk": proof_key().public_jwk}),
    ),
    case(
        "PS256 header, RS256 signature",
        Reason.PROOF_SIGNATURE_INVALID,
        lambda: _proof_with(signer=key("RS256"), header={"alg": "PS256"}),
    ),
    # The proof claims
    case("jti missing", Reason.PROOF_JTI_INVALID, lambda: _proof_with(claims={"jti": DROP})),
    case("jti empty", Reason.PROOF_JTI_INVALID, lambda: _proof_with(claims={"jti": ""})),
    case("jti too long", Reason.PROOF_JTI_INVALID, lambda: _proof_with(claims={"jti": "j" * 257})),
    case("jti a number", Reason.PROOF_JTI_INVALID, lambda: _proof_with(claims={"jti": 7})),
    case("htm lower case", Reason.PROOF_HTM_MISMATCH, lambda: _proof_with(claims={"htm": "get"})),
    case("htm other", Reason.PROOF_HTM_MISMATCH, lambda: _proof_with(method="POST")),
    case("htm not a string", Reason.PROOF_CLAIMS_INVALID, lambda: _proof_with(claims={"htm": 1})),
    case(
        "htu other path",
        Reason.PROOF_HTU_MISMATCH,
        lambda: _proof_with(url="https://api.example.com/orders/43"),
    ),
    case("htu missing", Reason.PROOF_HTU_MISMATCH, lambda: _proof_with(claims={"htu": DROP})),
    case(
        "htu ftp",
        Reason.PROOF_HTU_MISMATCH,
        lambda: _proof_with(url="ftp://api.example.com/orders/42"),
    ),
    case(
        "htu userinfo",
        Reason.PROOF_HTU_MISMATCH,
        lambda: _proof_with(url="https://me@api.example.com/orders/42"),
    ),
    case("iat missing", Reason.PROOF_IAT_INVALID, lambda: _proof_with(claims={"iat": DROP})),
    case("iat a string", Reason.PROOF_IAT_INVALID, lambda: _proof_with(claims={"iat": str(NOW)})),
    case("iat a bool", Reason.PROOF_IAT_INVALID, lambda: _proof_with(claims={"iat": True})),
    case("iat too old", Reason.PROOF_IAT_TOO_OLD, lambda: _proof_with(iat=NOW - 61)),
    case("iat in the future", Reason.PROOF_IAT_IN_FUTURE, lambda: _proof_with(iat=NOW + 31)),
    case(
        "ath missing",
        Reason.PROOF_ATH_MISSING,
        lambda: resource_facts(token=GOOD_TOKEN, proof=make_proof()),
    ),
    case(
        "ath of another token",
        Reason.PROOF_ATH_MISMATCH,
        lambda: resource_facts(token=GOOD_TOKEN, proof=make_proof(access_token=make_token())),
    ),
    case(
        "ath not a string", Reason.PROOF_CLAIMS_INVALID, lambda: _proof_with(claims={"ath": ["x"]})
    ),
    # Nonces
    case(
        "nonce required",
        Reason.NONCE_REQUIRED,
        lambda: resource_facts(policy=NONCE_POLICY),
        nonce_keys=NONCE_KEYS,
    ),
    case(
        "nonce invalid",
        Reason.NONCE_INVALID,
        lambda: resource_facts(
            policy=NONCE_POLICY,
            proof=make_proof(access_token=GOOD_TOKEN, nonce="x" * 34),
            token=GOOD_TOKEN,
        ),
        nonce_keys=NONCE_KEYS,
    ),
    case(
        "nonce expired",
        Reason.NONCE_EXPIRED,
        lambda: resource_facts(
            policy=NONCE_POLICY,
            token=GOOD_TOKEN,
            proof=make_proof(access_token=GOOD_TOKEN, nonce=issue_nonce(NONCE_KEYS, NOW - 400)),
        ),
        nonce_keys=NONCE_KEYS,
    ),
    # Replay
    Case("same proof twice", Reason.REPLAYED, _replayed),
    # The access token
    case("token not a JWT", Reason.TOKEN_MALFORMED, lambda: _with_token("opaque-token")),
    case(
        "a DPoP proof as the token",
        Reason.TOKEN_MALFORMED,
        lambda: _with_token(make_proof(claims={"iss": ISSUER, "cnf": {"jkt": proof_key().jkt}})),
    ),
    case(
        "token alg none",
        Reason.TOKEN_ALG_NOT_ALLOWED,
        lambda: _with_token(make_token(header={"alg": "none"})),
    ),
    case(
        "token alg not for this issuer",
        Reason.TOKEN_ALG_NOT_ALLOWED,
        lambda: _with_token(make_token()),
        issuers=(trusted_issuer(algs=frozenset({"RS256"})),),
    ),
    case(
        "issuer unknown",
        Reason.TOKEN_ISSUER_UNKNOWN,
        lambda: _with_token(make_token(claims={"iss": "https://evil.example"})),
    ),
    case(
        "kid unknown",
        Reason.TOKEN_KEY_UNKNOWN,
        lambda: _with_token(make_token(header={"kid": "nope"})),
    ),
    case(
        "token signature invalid",
        Reason.TOKEN_SIGNATURE_INVALID,
        lambda: _with_token(flip_signature_bit(make_token(), 3)),
    ),
    case(
        "token by another key",
        Reason.TOKEN_SIGNATURE_INVALID,
        lambda: _with_token(make_token(signer=key("ES256", 2))),
    ),
    case("token expired", Reason.TOKEN_EXPIRED, lambda: _with_token(make_token(now=NOW - 1000))),
    case(
        "token nbf in the future",
        Reason.TOKEN_NOT_YET_VALID,
        lambda: _with_token(make_token(claims={"nbf": NOW + 3600})),
    ),
    case(
        "token audience wrong",
        Reason.TOKEN_AUDIENCE_INVALID,
        lambda: _with_token(make_token(claims={"aud": "https://other.example"})),
    ),
    case(
        "token cnf not an object",
        Reason.TOKEN_CLAIMS_INVALID,
        lambda: _with_token(make_token(claims={"cnf": "jkt"})),
    ),
    case("token not bound", Reason.TOKEN_NOT_BOUND, lambda: _with_token(UNBOUND)),
    case(
        "token bound to another key",
        Reason.JKT_MISMATCH,
        lambda: _with_token(make_token(jkt=key("ES256", 2).jkt)),
    ),
    # The request facts reported by the caller
    case("empty method", Reason.REQUEST_INVALID, lambda: resource_facts(method="")),
    case("method with a space", Reason.REQUEST_INVALID, lambda: resource_facts(method="GET X")),
    case("relative target URI", Reason.REQUEST_INVALID, lambda: resource_facts(url="/orders/42")),
    case(
        "ftp target URI",
        Reason.REQUEST_INVALID,
        lambda: resource_facts(url="ftp://api.example.com/a"),
    ),
    # Faults
    Case("key source down", Reason.KEY_SOURCE_UNAVAILABLE, _failing_key_source),
    case(
        "replay store down",
        Reason.REPLAY_STORE_UNAVAILABLE,
        resource_facts,
        replay=UnavailableReplayStore(),
    ),
    case("replay store bug", Reason.INTERNAL_ERROR, resource_facts, replay=BrokenReplayStore()),
    case(
        "nonce policy without secret",
        Reason.INTERNAL_ERROR,
        lambda: resource_facts(policy=NONCE_POLICY),
    ),
]


@pytest.mark.parametrize("c", CASES, ids=[c.why for c in CASES])
def test_denial(c: Case) -> None:
    decision = c.run()
    assert_denied(decision, c.reason)
    assert decision.http_status == CATALOGUE[c.reason].http_status
    assert decision.www_authenticate == _expected_challenge(c.reason, c.algs)


# Triggered through a real introspection endpoint in tests/integration/test_token_sources.py.
_INTROSPECTION_REASONS = {Reason.TOKEN_INACTIVE, Reason.INTROSPECTION_UNAVAILABLE}


def test_every_denial_reason_has_a_real_trigger() -> None:
    # Sender constraints and the FAPI 2.0 profile: tests/unit/test_engine_mtls.py.
    triggered = {c.reason for c in CASES} | {c.reason for c in MTLS_CASES}
    assert triggered == set(Reason) - {Reason.OK} - _INTROSPECTION_REASONS


# --- allowed requests -------------------------------------------------------------------------


def test_valid_dpop_request() -> None:
    token = make_token()
    proof = make_proof(access_token=token, jti="the-jti")
    decision = _decide(resource_facts(token=token, proof=proof))
    assert_allowed(decision)
    assert (decision.jkt, decision.jti, decision.alg) == (proof_key().jkt, "the-jti", "ES256")
    assert decision.claims is not None
    assert (decision.claims.issuer, decision.claims.subject) == (ISSUER, "alice")
    assert decision.claims.jkt == proof_key().jkt
    assert decision.dpop_nonce == ""


PROOF_SIGNERS = {alg: key(alg) for alg in DEFAULT_PROOF_ALGS}
PROOF_SIGNERS["EdDSA with Ed448"] = replace(key("Ed448"), alg="EdDSA")


@pytest.mark.parametrize("name", list(PROOF_SIGNERS))
def test_every_default_proof_alg(name: str) -> None:
    signer = PROOF_SIGNERS[name]
    alg = signer.alg
    token = make_token(jkt=signer.jkt)
    decision = _decide(resource_facts(token=token, proof=make_proof(signer, access_token=token)))
    assert_allowed(decision)
    assert (decision.alg, decision.jkt) == (alg, signer.jkt)


def test_key_hints_in_the_proof_header_are_not_used() -> None:
    other = key("ES256", 2)
    hints = {
        "kid": other.jkt,
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": ["MIIBszCCAVmgAwIBAgIUX"],
    }
    decision = _decide(_proof_with(header=hints))
    assert_allowed(decision)
    assert decision.jkt == proof_key().jkt
    # And a proof signed by the hinted key with the good jwk does not verify.
    decision = _decide(_proof_with(signer=other, header={**hints, "jwk": proof_key().public_jwk}))
    assert_denied(decision, Reason.PROOF_SIGNATURE_INVALID)


def test_query_and_fragment_of_the_request_are_ignored() -> None:
    token = make_token()
    facts = RequestFacts(
        method="GET",
        target_uri="https://API.example.com:443/orders/42?page=2#x",
        authorization=(f"DPoP {token}",),
        dpop=(make_proof(access_token=token, url=RESOURCE_URL + "?page=1"),),
    )
    assert_allowed(_decide(facts))


def test_iat_window_edges_through_the_engine() -> None:
    for iat, expected in [
        (NOW - 60, Reason.OK),
        (NOW - 61, Reason.PROOF_IAT_TOO_OLD),
        (NOW + 30, Reason.OK),  # the default future allowance: 30 s (issue 19)
        (NOW + 31, Reason.PROOF_IAT_IN_FUTURE),
    ]:
        assert (_decide(_proof_with(iat=iat))).reason is expected


# --- modes --------------------------------------------------------------------------------------


ALLOW_BEARER = Policy(mode=Mode.ALLOW_BEARER)


def test_bearer_allowed_under_allow_bearer() -> None:
    decision = _decide(resource_facts(token=UNBOUND, scheme="Bearer", dpop=(), policy=ALLOW_BEARER))
    assert_allowed(decision)
    assert decision.claims is not None and decision.claims.jkt == ""
    assert decision.jkt == ""


def test_invalid_bearer_token_keeps_its_reason_under_allow_bearer() -> None:
    expired = make_token(bound=False, now=NOW - 1000)
    facts = resource_facts(token=expired, scheme="Bearer", dpop=(), policy=ALLOW_BEARER)
    assert_denied(_decide(facts), Reason.TOKEN_EXPIRED)


def test_dpop_is_still_fully_checked_under_allow_bearer() -> None:
    assert_allowed(_decide(resource_facts(policy=ALLOW_BEARER)))
    assert_denied(_decide(resource_facts(dpop=(), policy=ALLOW_BEARER)), Reason.PROOF_MISSING)
    facts = resource_facts(token=UNBOUND, policy=ALLOW_BEARER)
    assert_denied(_decide(facts), Reason.TOKEN_NOT_BOUND)


REPORT_ONLY = Policy(mode=Mode.REPORT_ONLY)


def test_report_only_allows_but_keeps_the_reason() -> None:
    token = make_token()
    facts = resource_facts(
        token=token, proof=flip_signature_bit(make_proof(access_token=token)), policy=REPORT_ONLY
    )
    decision = _decide(facts)
    assert (decision.allow, decision.enforced) == (True, False)
    assert decision.reason is Reason.PROOF_SIGNATURE_INVALID
    assert decision.http_status == 401
    assert decision.www_authenticate == _expected_challenge(Reason.PROOF_SIGNATURE_INVALID)


def test_report_only_of_a_valid_request_is_enforced_ok() -> None:
    decision = _decide(resource_facts(policy=REPORT_ONLY))
    assert_allowed(decision)


def test_report_only_still_records_replays() -> None:
    verifier = make_verifier()
    facts = resource_facts(policy=REPORT_ONLY)
    assert_allowed(verifier.verify(facts))
    decision = verifier.verify(facts)
    assert (decision.allow, decision.enforced, decision.reason) == (True, False, Reason.REPLAYED)


def test_report_only_of_a_fault() -> None:
    decision = _decide(resource_facts(policy=REPORT_ONLY), replay=UnavailableReplayStore())
    assert (decision.allow, decision.enforced) == (True, False)
    assert decision.reason is Reason.REPLAY_STORE_UNAVAILABLE


@pytest.mark.parametrize(
    "facts",
    [
        RequestFacts(method="GET", target_uri=RESOURCE_URL, policy=Policy(mode=Mode.OFF)),
        RequestFacts(
            method="\x00",
            target_uri="not a uri",
            authorization=("garbage", "more"),
            dpop=("x", "y"),
            policy=Policy(mode=Mode.OFF, nonce_required=True),
        ),
    ],
)
def test_off_allows_everything_without_checking(facts: RequestFacts) -> None:
    replay = MemoryReplayStore()
    decision = make_verifier(replay=replay).verify(facts, explain=True)
    assert_allowed(decision)
    assert decision.checks == () and decision.claims is None and len(replay) == 0


# --- nonces -------------------------------------------------------------------------------------


def test_nonce_challenge_then_retry() -> None:
    verifier = make_verifier(nonce_keys=NONCE_KEYS)
    token = make_token()
    first = verifier.verify(resource_facts(token=token, policy=NONCE_POLICY))
    assert_denied(first, Reason.NONCE_REQUIRED)
    assert first.www_authenticate.startswith('DPoP error="use_dpop_nonce", ')
    assert first.dpop_nonce == issue_nonce(NONCE_KEYS, NOW)

    proof = make_proof(access_token=token, nonce=first.dpop_nonce)
    retry = verifier.verify(resource_facts(token=token, proof=proof, policy=NONCE_POLICY))
    assert_allowed(retry)
    assert retry.dpop_nonce == ""  # a fresh nonce is not replaced


@pytest.mark.parametrize("reason", [Reason.NONCE_INVALID, Reason.NONCE_EXPIRED])
def test_every_nonce_denial_offers_a_fresh_nonce(reason: Reason) -> None:
    nonce = "x" * 34 if reason is Reason.NONCE_INVALID else issue_nonce(NONCE_KEYS, NOW - 1000)
    token = make_token()
    facts = resource_facts(
        token=token, proof=make_proof(access_token=token, nonce=nonce), policy=NONCE_POLICY
    )
    decision = _decide(facts, nonce_keys=NONCE_KEYS)
    assert_denied(decision, reason)
    assert decision.dpop_nonce == issue_nonce(NONCE_KEYS, NOW)


def test_nonce_is_refreshed_only_past_half_its_lifetime() -> None:
    clock = FakeClock()
    verifier = make_verifier(clock=clock, nonce_keys=NONCE_KEYS)
    nonce = issue_nonce(NONCE_KEYS, NOW)
    issued = NOW - NOW % NONCE_KEYS.step
    for age, refreshed in [
        (0, False),
        (NONCE_KEYS.lifetime / 2, False),
        (NONCE_KEYS.lifetime / 2 + 1, True),
    ]:
        clock.now = issued + age
        token = make_token(now=clock.now)
        proof = make_proof(access_token=token, nonce=nonce, iat=clock.now)
        decision = verifier.verify(resource_facts(token=token, proof=proof, policy=NONCE_POLICY))
        assert_allowed(decision)
        assert decision.dpop_nonce == (issue_nonce(NONCE_KEYS, clock.now) if refreshed else "")


def test_nonce_of_the_previous_secret_is_accepted_after_rotation() -> None:
    rotated = NonceKeys(current=b"r" * 32, previous=NONCE_KEYS.current)
    token = make_token()
    proof = make_proof(access_token=token, nonce=issue_nonce(NONCE_KEYS, NOW))
    facts = resource_facts(token=token, proof=proof, policy=NONCE_POLICY)
    assert_allowed(_decide(facts, nonce_keys=rotated))
    without_previous = NonceKeys(current=b"r" * 32)
    assert_denied(_decide(facts, nonce_keys=without_previous), Reason.NONCE_INVALID)


def test_nonce_is_not_checked_when_the_route_does_not_require_it() -> None:
    token = make_token()
    assert_allowed(_decide(_with_token(token, nonce="anything"), nonce_keys=NONCE_KEYS))


# --- replay and ordering ------------------------------------------------------------------------


def test_replay_is_scoped_by_key_and_uri() -> None:
    verifier = make_verifier()
    token = make_token()
    assert_allowed(
        verifier.verify(
            resource_facts(token=token, proof=make_proof(access_token=token, jti="same"))
        )
    )
    other_url = "https://api.example.com/orders/43"
    proof = make_proof(access_token=token, jti="same", url=other_url)
    assert_allowed(verifier.verify(resource_facts(token=token, proof=proof, url=other_url)))
    other_key = key("ES256", 2)
    token2 = make_token(jkt=other_key.jkt)
    proof = make_proof(other_key, access_token=token2, jti="same")
    assert_allowed(verifier.verify(resource_facts(token=token2, proof=proof)))
    proof = make_proof(access_token=token, jti="same", iat=NOW - 1)  # a new signature, same jti
    assert_denied(verifier.verify(resource_facts(token=token, proof=proof)), Reason.REPLAYED)


def test_a_denied_request_does_not_consume_the_proof() -> None:
    replay = MemoryReplayStore(clock=FakeClock())
    verifier = make_verifier(replay=replay)
    expired = make_token(now=NOW - 1000)
    decision = verifier.verify(_with_token(expired))
    assert_denied(decision, Reason.TOKEN_EXPIRED)
    assert len(replay) == 0


def test_replay_store_down_fail_open_allows() -> None:
    decision = _decide(resource_facts(), replay=UnavailableReplayStore(), replay_fail_open=True)
    assert_allowed(decision)
    assert decision.jkt == proof_key().jkt


def test_replay_fail_open_does_not_cover_unexpected_faults() -> None:
    decision = _decide(resource_facts(), replay=BrokenReplayStore(), replay_fail_open=True)
    assert_denied(decision, Reason.INTERNAL_ERROR)


def test_explain_lists_the_checks_up_to_the_failure() -> None:
    token = make_token()
    facts = resource_facts(token=token, proof=flip_signature_bit(make_proof(access_token=token)))
    decision = make_verifier().verify(facts, explain=True)
    names = [(check.name, check.passed) for check in decision.checks]
    assert names == [
        ("request", True),
        ("authorization", True),
        ("proof.header_count", True),
        ("proof.syntax", True),
        ("proof.header", True),
        ("proof.jwk", True),
        ("proof.signature", False),
    ]
    allowed = make_verifier().verify(resource_facts(), explain=True)
    assert [c.name for c in allowed.checks][-3:] == ["token", "token.cnf.jkt", "replay"]
    assert all(c.passed for c in allowed.checks)
    assert (make_verifier().verify(resource_facts())).checks == ()


# --- proof-only mode (token endpoint, RFC 9449 §5) ----------------------------------------------


def _token_request(**overrides: Any) -> RequestFacts:
    return token_request_facts(make_proof(method="POST", url=TOKEN_URL, **overrides))


def test_proof_only_allows_and_returns_the_thumbprint() -> None:
    decision = _decide(_token_request())
    assert_allowed(decision)
    assert decision.jkt == proof_key().jkt and decision.claims is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"header": {"typ": "jwt"}}, Reason.PROOF_TYP_INVALID),
        ({"claims": {"htu": "https://as.example.com/other"}}, Reason.PROOF_HTU_MISMATCH),
        ({"iat": NOW - 3600}, Reason.PROOF_IAT_TOO_OLD),
        ({"header": {"jwk": key("ES384").public_jwk}}, Reason.PROOF_JWK_INVALID),
    ],
)
def test_proof_only_denials_are_400_without_a_challenge(
    overrides: dict[str, Any], reason: Reason
) -> None:
    decision = _decide(_token_request(**overrides))
    assert_denied(decision, reason)
    assert (decision.http_status, decision.www_authenticate) == (400, "")


def test_proof_only_missing_malformed_and_replayed_are_400() -> None:
    verifier = make_verifier()
    for facts, reason in [
        (
            RequestFacts(method="POST", target_uri=TOKEN_URL, proof_only=True),
            Reason.PROOF_MISSING,
        ),
        (token_request_facts("not.a.jws"), Reason.PROOF_MALFORMED),
    ]:
        decision = verifier.verify(facts)
        assert_denied(decision, reason)
        assert (decision.http_status, decision.www_authenticate) == (400, "")
    facts = _token_request()
    assert_allowed(verifier.verify(facts))
    decision = verifier.verify(facts)
    assert_denied(decision, Reason.REPLAYED)
    assert (decision.http_status, decision.www_authenticate) == (400, "")


def test_proof_only_nonce_denial_is_400_with_a_nonce() -> None:
    decision = _decide(
        token_request_facts(make_proof(method="POST", url=TOKEN_URL), policy=NONCE_POLICY),
        nonce_keys=NONCE_KEYS,
    )
    assert_denied(decision, Reason.NONCE_REQUIRED)
    assert (decision.http_status, decision.www_authenticate) == (400, "")
    assert decision.dpop_nonce == issue_nonce(NONCE_KEYS, NOW)


def test_proof_only_faults_keep_their_status() -> None:
    decision = _decide(_token_request(), replay=UnavailableReplayStore())
    assert_denied(decision, Reason.REPLAY_STORE_UNAVAILABLE)
    assert (decision.http_status, decision.www_authenticate) == (503, "")
    decision = _decide(_token_request(), replay=UnavailableReplayStore(), replay_fail_open=True)
    assert_allowed(decision)


def test_proof_only_does_not_need_an_access_token_or_ath() -> None:
    decision = _decide(_token_request(claims={"ath": DROP}))
    assert_allowed(decision)
