"""Property tests: whatever arrives, ``Verifier.verify`` answers with a coded denial.

Random text and bytes, random JWS parts, random JSON headers and payloads signed with real keys,
random access tokens signed by the trusted issuer, huge headers and random Authorization values:
the engine never raises, never allows, never reports ``internal_error``, and what it sends back
(challenge, message) stays header-safe.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.helpers import (
    ISSUER,
    NOW,
    RESOURCE_URL,
    UnavailableReplayStore,
    issuer_key,
    key,
    make_proof,
    make_token,
    make_verifier,
    proof_key,
    sign_jws,
    sign_raw,
)
from verifier.domain.model import Decision, Mode, Policy, RequestFacts
from verifier.domain.reasons import Reason
from verifier.dpop.nonce import NonceKeys, issue_nonce
from verifier.dpop.proof import access_token_hash
from verifier.engine.pipeline import Verifier
from verifier.jose.rfc7515 import b64url_encode

NONCE_KEYS = NonceKeys(current=b"m" * 32)
VERIFIER = make_verifier(nonce_keys=NONCE_KEYS)
# A proof that passes every check still ends in replay_store_unavailable here: random proofs
# reach the replay key, yet the request is always denied.
STORE_DOWN = make_verifier(nonce_keys=NONCE_KEYS, replay=UnavailableReplayStore())
GOOD_TOKEN = make_token()
HEADER_SAFE = re.compile(r"[ -~]*")

FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _verify(facts: RequestFacts, verifier: Verifier = VERIFIER) -> Decision:
    decision = verifier.verify(facts)
    assert isinstance(decision, Decision)
    assert decision.allow is False, decision
    assert decision.reason in Reason
    assert decision.reason not in (Reason.OK, Reason.INTERNAL_ERROR), decision
    assert HEADER_SAFE.fullmatch(decision.www_authenticate)
    assert HEADER_SAFE.fullmatch(decision.message), decision.message
    assert decision.jkt == "" and decision.claims is None
    event(decision.reason.value)  # shown by --hypothesis-show-statistics
    return decision


# --- strategies -----------------------------------------------------------------------------

any_text = st.one_of(
    st.text(),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Zs", "Lu"])),
    st.binary().map(lambda raw: raw.decode("latin-1")),
)
policies = st.builds(
    Policy, mode=st.sampled_from([Mode.REQUIRE, Mode.ALLOW_BEARER]), nonce_required=st.booleans()
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` nine times in ten, else ``other``: many examples get past the early checks."""
    return st.integers(0, 9).flatmap(lambda pick: valid if pick < 9 else other)


EXTREMES = st.sampled_from(
    [10**400, -(10**400), 2**63, -(2**64), 1e308, -1e308, 5e-324, "", "\ud800"]
)


def _member(valid: Any) -> st.SearchStrategy[Any]:
    """Usually a good value, else an extreme or random JSON value, or absent (``...``)."""
    good = valid if isinstance(valid, st.SearchStrategy) else st.just(valid)
    return mostly(good, st.one_of(EXTREMES, json_values, st.just(...)))


def _object(members: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    extra = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    fixed = st.fixed_dictionaries(members)
    return st.builds(
        lambda chosen, more: {**more, **{k: v for k, v in chosen.items() if v is not ...}},
        fixed,
        extra,
    )


SIGNERS = [key("ES256"), key("PS256"), key("Ed25519")]
TOKENS = [make_token(jkt=signer.jkt) for signer in SIGNERS]


def _jwk_variants(jwk: dict[str, str]) -> st.SearchStrategy[Any]:
    mutated = st.builds(
        lambda name, value: {**jwk, name: value}, st.sampled_from(sorted(jwk)), json_values
    )
    return mostly(st.just(jwk), st.one_of(mutated, st.just(key("ES384").public_jwk), json_values))


def _proof_header(signer_index: int) -> st.SearchStrategy[dict[str, Any]]:
    signer = SIGNERS[signer_index]
    return _object(
        {
            "typ": _member("dpop+jwt"),
            "alg": mostly(
                st.just(signer.alg),
                st.one_of(st.sampled_from(["none", "HS256", "ES384", "EdDSA"]), json_values),
            ),
            "jwk": _jwk_variants(signer.public_jwk),
            "crit": mostly(st.just(...), json_values),
            "kid": st.just(...) | json_values,
        }
    )


def _proof_payload(token: str) -> st.SearchStrategy[dict[str, Any]]:
    return _object(
        {
            "jti": _member(
                st.text(min_size=1)
                | st.text(st.characters(codec=None, categories=["Cs", "Lu"]), min_size=1)
            ),
            "htm": _member(mostly(st.just("GET"), st.sampled_from(["get", "POST", "GET "]))),
            "htu": _member(
                mostly(
                    st.sampled_from([RESOURCE_URL, RESOURCE_URL + "?q#f", RESOURCE_URL.upper()]),
                    st.sampled_from(
                        ["https://api.example.com/", "ftp://api.example.com/orders/42"]
                    ),
                )
            ),
            "iat": _member(
                mostly(st.just(NOW), st.integers(NOW - 62, NOW + 7) | st.floats(NOW - 62, NOW + 7))
            ),
            "ath": _member(access_token_hash(token)),
            "nonce": _member(issue_nonce(NONCE_KEYS, NOW)),
        }
    )


# --- properties -----------------------------------------------------------------------------


@FAST
@given(
    method=mostly(st.just("GET"), any_text),
    target=mostly(st.just(RESOURCE_URL), any_text),
    authorization=st.lists(any_text, max_size=3).map(tuple),
    dpop=st.lists(any_text, max_size=3).map(tuple),
    proof_only=st.booleans(),
    policy=policies,
)
def test_random_request_facts(
    method: str,
    target: str,
    authorization: tuple[str, ...],
    dpop: tuple[str, ...],
    proof_only: bool,
    policy: Policy,
) -> None:
    _verify(RequestFacts(method, target, authorization, dpop, proof_only, policy=policy))


@FAST
@given(
    parts=st.lists(
        st.one_of(
            st.binary(max_size=64).map(b64url_encode),
            json_values.map(lambda value: b64url_encode(json.dumps(value).encode())),
            any_text,
        ),
        min_size=1,
        max_size=5,
    ),
    proof_only=st.booleans(),
)
def test_random_jws_parts(parts: list[str], proof_only: bool) -> None:
    facts = RequestFacts(
        "GET",
        RESOURCE_URL,
        authorization=(f"DPoP {GOOD_TOKEN}",),
        dpop=(".".join(parts),),
        proof_only=proof_only,
    )
    _verify(facts)


@FAST
@given(
    data=st.data(),
    signer_index=st.integers(0, len(SIGNERS) - 1),
    proof_only=st.booleans(),
    policy=policies,
)
def test_random_signed_proofs(
    data: st.DataObject, signer_index: int, proof_only: bool, policy: Policy
) -> None:
    header = data.draw(_proof_header(signer_index))
    payload = data.draw(_proof_payload(TOKENS[signer_index]))
    proof = sign_jws(header, payload, SIGNERS[signer_index])
    authorization = (f"DPoP {TOKENS[signer_index]}",)
    facts = RequestFacts("GET", RESOURCE_URL, authorization, (proof,), proof_only, policy=policy)
    _verify(facts, STORE_DOWN)


@FAST
@given(header=json_values, payload=json_values)
def test_random_signed_json_documents(header: Any, payload: Any) -> None:
    raw = sign_raw(json.dumps(header).encode(), json.dumps(payload).encode(), proof_key())
    _verify(RequestFacts("POST", RESOURCE_URL, dpop=(raw,), proof_only=True))


token_headers = _object(
    {"alg": _member("ES256"), "kid": _member("as-key-1"), "typ": _member("at+jwt")}
)
token_payloads = _object(
    {
        "iss": _member(ISSUER),
        "aud": _member("https://api.example.com"),
        "exp": _member(st.integers(NOW - 100, NOW + 300)),
        "nbf": _member(st.integers(NOW - 100, NOW + 100)),
        "iat": _member(NOW),
        "sub": _member("alice"),
        "scope": _member("a b"),
        "client_id": _member("c"),
        # Never the proof key's thumbprint: the request must stay denied.
        "cnf": mostly(st.just({"jkt": key("ES256", 2).jkt}), st.one_of(json_values, st.just(...))),
    }
)


@FAST
@given(header=token_headers, payload=token_payloads, scheme=st.sampled_from(["DPoP", "Bearer"]))
def test_random_access_tokens_signed_by_the_trusted_issuer(
    header: dict[str, Any], payload: dict[str, Any], scheme: str
) -> None:
    token = sign_jws(header, payload, issuer_key())
    proof = make_proof(access_token=token)
    _verify(RequestFacts("GET", RESOURCE_URL, (f"{scheme} {token}",), (proof,)))


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=8 * 1024, max_value=256 * 1024),
    fill=st.sampled_from(["a", "eyJ", ".", "é", "\x00", " ", ","]),
    where=st.sampled_from(["dpop", "authorization", "target", "method"]),
)
def test_huge_headers(size: int, fill: str, where: str) -> None:
    huge = (fill * size)[:size]
    token = make_token()
    facts = RequestFacts("GET", RESOURCE_URL, (f"DPoP {token}",), (make_proof(access_token=token),))
    if where == "dpop":
        facts = replace(facts, dpop=(huge,))
    elif where == "authorization":
        facts = replace(facts, authorization=(f"DPoP {huge}",))
    elif where == "target":
        facts = replace(facts, target_uri=RESOURCE_URL + "/" + huge)
    else:
        facts = replace(facts, method=huge)
    _verify(facts)


@FAST
@given(
    value=st.one_of(
        any_text,
        st.builds(
            lambda scheme, token: f"{scheme} {token}",
            st.sampled_from(["DPoP", "dpop", "Bearer", "Basic", "DPoP ", ""]),
            st.one_of(st.from_regex(r"[A-Za-z0-9\-._~+/]+=*", fullmatch=True), any_text),
        ),
    ),
    policy=policies,
)
def test_random_authorization_values(value: str, policy: Policy) -> None:
    _verify(RequestFacts("GET", RESOURCE_URL, (value,), (make_proof(),), policy=policy))
