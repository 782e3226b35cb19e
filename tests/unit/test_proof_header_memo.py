"""The engine's memo of checked proof headers changes no decision, only the work done.

A client signs every proof with the same JOSE header, so the engine remembers a header (its exact
base64url text) that passed the header checks, with its imported key and thumbprint. These tests
decide the same requests with an engine that has never seen the header (cold) and with one that
has just accepted a proof carrying it (warm), and require the same answer, explain table included.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.helpers import (
    RESOURCE_URL,
    assert_allowed,
    assert_denied,
    flip_signature_bit,
    key,
    make_proof,
    make_token,
    make_verifier,
    resource_facts,
    sign_raw,
)
from tests.unit.test_malformed_input import SIGNERS, TOKENS, _proof_payload
from verifier.domain.model import Decision, RequestFacts
from verifier.domain.reasons import Reason
from verifier.engine.pipeline import Verifier
from verifier.jose.rfc7515 import b64url_encode

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decide(engine: Verifier, facts: RequestFacts) -> Decision:
    return engine.verify(facts, explain=True)


def _warm(signer_index: int) -> Verifier:
    """An engine that has accepted one proof of ``SIGNERS[signer_index]`` (header memoized)."""
    engine = make_verifier()
    signer, token = SIGNERS[signer_index], TOKENS[signer_index]
    proof = make_proof(signer, access_token=token)
    assert_allowed(_decide(engine, resource_facts(token=token, proof=proof)))
    assert len(engine._proof_keys) == 1
    return engine


def _same_answer(facts: RequestFacts, signer_index: int) -> Decision:
    cold = _decide(make_verifier(), facts)
    warm = _decide(_warm(signer_index), facts)
    assert (warm.allow, warm.reason, warm.message, warm.jkt, warm.alg) == (
        cold.allow,
        cold.reason,
        cold.message,
        cold.jkt,
        cold.alg,
    )
    assert warm.www_authenticate == cold.www_authenticate
    assert warm.checks == cold.checks
    return warm


def _header_b64(signer_index: int) -> str:
    return make_proof(SIGNERS[signer_index]).split(".")[0]


@FAST
@given(data=st.data(), signer_index=st.integers(0, len(SIGNERS) - 1))
def test_random_payloads_under_a_memoized_header(data: st.DataObject, signer_index: int) -> None:
    """Random claims (often valid) signed under the exact header the warm engine remembers."""
    token = TOKENS[signer_index]
    payload: dict[str, Any] = data.draw(_proof_payload(token))
    proof = make_proof(SIGNERS[signer_index], access_token=token, claims=payload)
    assert proof.split(".")[0] == _header_b64(signer_index)
    _same_answer(resource_facts(token=token, proof=proof), signer_index)


@FAST
@given(
    signer_index=st.integers(0, len(SIGNERS) - 1),
    payload=st.text(max_size=80) | st.binary(max_size=60).map(b64url_encode),
    signature=st.text(max_size=80) | st.binary(max_size=80).map(b64url_encode),
)
def test_random_bodies_under_a_memoized_header(
    signer_index: int, payload: str, signature: str
) -> None:
    """A remembered header says nothing about the rest: a bad payload or signature is still
    refused with the reason a cold engine gives."""
    proof = f"{_header_b64(signer_index)}.{payload}.{signature}"
    facts = resource_facts(token=TOKENS[signer_index], proof=proof)
    decision = _same_answer(facts, signer_index)
    assert not decision.allow


def test_a_forged_signature_under_a_memoized_header_is_refused() -> None:
    token = TOKENS[0]
    proof = flip_signature_bit(make_proof(SIGNERS[0], access_token=token), bit=7)
    decision = _same_answer(resource_facts(token=token, proof=proof), 0)
    assert_denied(decision, Reason.PROOF_SIGNATURE_INVALID)


def test_a_header_that_fails_its_checks_is_not_remembered() -> None:
    engine = make_verifier(proof_algs=("ES256",))
    signer = key("Ed25519")
    token = make_token(jkt=signer.jkt)
    for _ in range(2):
        facts = resource_facts(token=token, proof=make_proof(signer, access_token=token))
        assert_denied(_decide(engine, facts), Reason.PROOF_ALG_NOT_ALLOWED)
    bad_jwk = make_proof(SIGNERS[0], header={"jwk": {"kty": "EC", "crv": "P-256", "x": "AA"}})
    assert_denied(_decide(engine, resource_facts(proof=bad_jwk)), Reason.PROOF_JWK_INVALID)
    assert engine._proof_keys == {}


def test_the_memo_is_bounded_and_skips_oversized_headers() -> None:
    engine = make_verifier(key_cache_size=3)
    token = make_token()
    for index in range(7):  # seven distinct headers, same key: extra members differ
        proof = make_proof(header={"kid": f"k{index}"}, access_token=token)
        assert_allowed(_decide(engine, resource_facts(token=token, proof=proof)))
        assert 1 <= len(engine._proof_keys) <= 3
    engine._proof_keys.clear()
    huge = make_proof(header={"x-pad": "p" * 2000}, access_token=token)
    assert len(huge.split(".")[0]) > 2048
    assert_allowed(_decide(engine, resource_facts(token=token, proof=huge)))
    assert engine._proof_keys == {}


def test_a_memoized_header_on_another_route_still_checks_htu() -> None:
    token = TOKENS[0]
    proof = make_proof(SIGNERS[0], access_token=token, url="https://elsewhere.example/x")
    decision = _same_answer(resource_facts(token=token, proof=proof, url=RESOURCE_URL), 0)
    assert_denied(decision, Reason.PROOF_HTU_MISMATCH)


def test_raw_header_octets_are_the_memo_key() -> None:
    """The same JSON header written differently is another memo entry: both are checked."""
    signer, token = SIGNERS[0], TOKENS[0]
    engine = _warm(0)
    header = {"typ": "dpop+jwt", "alg": signer.alg, "jwk": signer.public_jwk}
    good = make_proof(signer, access_token=token)
    payload = good.split(".")[1]
    raw_payload = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    proof = sign_raw(json.dumps(header, indent=1).encode(), raw_payload, signer)
    assert proof.split(".")[0] != good.split(".")[0]
    assert_allowed(_decide(engine, resource_facts(token=token, proof=proof)))
    assert len(engine._proof_keys) == 2
    assert _decide(engine, resource_facts(token=token, proof=proof)).reason is Reason.REPLAYED
