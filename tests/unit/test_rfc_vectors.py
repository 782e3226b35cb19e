"""The examples printed in RFC 9449 and RFC 7638, checked with a fixed clock (now = the iat).

The fixture is a verbatim copy of the RFC figures; read its ``_provenance`` note.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.helpers import FakeClock, flip_signature_bit, make_verifier
from verifier.domain.model import RequestFacts
from verifier.domain.reasons import Denial, Reason
from verifier.dpop import proof as proofs
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS, verify_signature
from verifier.jose.rfc7517 import public_key_for_alg
from verifier.jose.rfc7638 import canonical_json, thumbprint
from verifier.tokens.claims import confirmation_jkt

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "rfc9449-vectors.json").read_text(encoding="utf-8")
)
PROOFS: dict[str, Any] = VECTORS["proofs"]
PRINTED_PROOFS = (
    "rfc9449_fig2_sec4.1",
    "rfc9449_fig5_sec5_token_request_authz_code",
    "rfc9449_fig7_sec5_token_request_refresh",
    "rfc9449_fig13_sec7.1_resource_request",
)
FIG2 = PROOFS["rfc9449_fig2_sec4.1"]
FIG13 = PROOFS["rfc9449_fig13_sec7.1_resource_request"]
ALLOWED = frozenset(DEFAULT_PROOF_ALGS)
LIMITS = proofs.ProofLimits()


def _payload(name: str) -> dict[str, Any]:
    entry = PROOFS[name]
    source = PROOFS[entry["identical_to"]] if "identical_to" in entry else entry
    payload: dict[str, Any] = json.loads(source["payload_json"])
    return payload


def test_rfc7638_rsa_thumbprint() -> None:
    vector = VECTORS["rfc7638_sec3.1"]
    assert canonical_json(vector["jwk"]) == vector["canonical_json"]
    digest = hashlib.sha256(vector["canonical_json"].encode()).digest()
    assert list(digest) == vector["sha256_octets"]
    assert thumbprint(vector["jwk"]) == vector["thumbprint"]
    assert thumbprint(vector["jwk"]) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc9449_proof_key_thumbprint() -> None:
    jwk = VECTORS["proof_jwk"]
    assert canonical_json(jwk) == VECTORS["proof_jwk_rfc7638_canonical_json"]
    digest = hashlib.sha256(canonical_json(jwk).encode()).hexdigest()
    assert digest == VECTORS["proof_jwk_thumbprint_sha256_hex"]
    assert thumbprint(jwk) == VECTORS["proof_jwk_thumbprint_jkt"]
    assert thumbprint(jwk) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


def test_fig6_access_token_ath() -> None:
    token = VECTORS["access_token_fig6"]
    assert hashlib.sha256(token.encode()).hexdigest() == VECTORS["access_token_fig6_sha256_hex"]
    assert proofs.access_token_hash(token) == VECTORS["access_token_fig6_ath"]
    assert proofs.access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_fig8_token_and_fig11_introspection_bind_the_proof_key() -> None:
    jws = proofs.parse_proof(
        VECTORS["jwt_access_token_fig8"]["jwt"]
    )  # claims only: key unpublished
    token_jkt = confirmation_jkt(jws.payload)
    assert token_jkt == VECTORS["introspection_response_fig11_cnf_jkt"]
    proofs.check_binding(token_jkt, thumbprint(VECTORS["proof_jwk"]))


def test_fig25_dpop_jkt_is_the_rfc7638_thumbprint() -> None:
    assert VECTORS["dpop_jkt_fig25"] == VECTORS["rfc7638_sec3.1"]["thumbprint"]


@pytest.mark.parametrize("name", PRINTED_PROOFS)
def test_printed_proof_verifies_at_its_iat(name: str) -> None:
    payload = _payload(name)
    jws = proofs.parse_proof(PROOFS[name]["jwt"])
    assert jws.payload == payload
    assert jws.header == json.loads(FIG2["header_json"])

    header = proofs.check_header(jws.header, ALLOWED)
    assert header.alg == "ES256"
    assert header.jwk == VECTORS["proof_jwk"]
    key = public_key_for_alg(header.jwk, header.alg)
    assert verify_signature(header.alg, key, jws.signing_input, jws.signature)

    claims = proofs.check_claims(
        jws.payload,
        method=payload["htm"],
        target_uri=payload["htu"],
        now=payload["iat"],
        limits=LIMITS,
    )
    assert (claims.jti, claims.htm, claims.htu) == (payload["jti"], payload["htm"], payload["htu"])
    assert claims.iat == payload["iat"]
    assert claims.ath == payload.get("ath")


@pytest.mark.parametrize("name", PRINTED_PROOFS)
@pytest.mark.parametrize("bit", [0, 255, 256, 511])
def test_printed_proof_with_one_bit_flipped_is_invalid(name: str, bit: int) -> None:
    jws = proofs.parse_proof(flip_signature_bit(PROOFS[name]["jwt"], bit))
    key = public_key_for_alg(VECTORS["proof_jwk"], "ES256")
    assert not verify_signature("ES256", key, jws.signing_input, jws.signature)


def test_printed_proof_outside_the_window_is_refused() -> None:
    payload = _payload("rfc9449_fig2_sec4.1")
    jws = proofs.parse_proof(FIG2["jwt"])
    with pytest.raises(Denial) as caught:
        proofs.check_claims(
            jws.payload,
            method="POST",
            target_uri=payload["htu"],
            now=payload["iat"] + LIMITS.iat_max_age + 1,
            limits=LIMITS,
        )
    assert caught.value.reason is Reason.PROOF_IAT_TOO_OLD


def test_fig13_ath_matches_the_fig6_access_token() -> None:
    jws = proofs.parse_proof(FIG13["jwt"])
    claims = proofs.check_claims(
        jws.payload,
        method="GET",
        target_uri="https://resource.example.org/protectedresource",
        now=FIG13["iat"],
        limits=LIMITS,
    )
    proofs.check_ath(claims, VECTORS["access_token_fig6"])
    assert FIG13["authorization_header"] == "DPoP " + VECTORS["access_token_fig6"]
    with pytest.raises(Denial) as caught:
        proofs.check_ath(claims, VECTORS["refresh_token_fig6"])
    assert caught.value.reason is Reason.PROOF_ATH_MISMATCH


def test_fig2_through_the_engine_in_proof_only_mode_then_replayed() -> None:
    verifier = make_verifier(clock=FakeClock(FIG2["iat"]))
    facts = RequestFacts(
        method="POST",
        target_uri="https://server.example.com/token",
        dpop=(FIG2["jwt"],),
        proof_only=True,
    )

    first = verifier.verify(facts)
    assert (first.allow, first.reason) == (True, Reason.OK)
    assert first.jkt == VECTORS["proof_jwk_thumbprint_jkt"]
    assert (first.jti, first.alg) == ("-BwC3ESc6acc2lTc", "ES256")

    second = verifier.verify(facts)
    assert (second.allow, second.reason) == (False, Reason.REPLAYED)
    assert second.http_status == 400
    assert second.www_authenticate == ""


def test_fig7_reuses_the_fig2_jti_for_the_same_key_and_htu() -> None:
    # Figure 7 was issued later with fig2's jti: a server still remembering fig2 calls it a replay.
    clock = FakeClock(FIG2["iat"])
    verifier = make_verifier(clock=clock, limits=proofs.ProofLimits(iat_max_age=3600))
    assert (verifier.verify(_token_request(FIG2["jwt"]))).allow
    clock.now = PROOFS["rfc9449_fig7_sec5_token_request_refresh"]["iat"]
    fig7 = PROOFS["rfc9449_fig7_sec5_token_request_refresh"]["jwt"]
    assert (verifier.verify(_token_request(fig7))).reason is Reason.REPLAYED


def _token_request(proof: str) -> RequestFacts:
    return RequestFacts(
        method="POST",
        target_uri="https://server.example.com/token",
        dpop=(proof,),
        proof_only=True,
    )
