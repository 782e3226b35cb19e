"""The golden table of every reason: HTTP status, RFC error and the exact WWW-Authenticate value.

The values are written out literally so that any change to the wire behaviour shows up in review.
The challenge column is what the engine sends for a resource request under the default proof algs.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.helpers import (
    NOW,
    UnavailableReplayStore,
    flip_signature_bit,
    make_proof,
    make_token,
    make_verifier,
    proof_key,
    resource_facts,
)
from verifier.domain.model import Policy, TokenClaims
from verifier.domain.reasons import CATALOGUE, Denial, Reason, RfcError, info
from verifier.dpop.challenge import dpop_challenge, quote
from verifier.dpop.nonce import NonceKeys, issue_nonce
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS

ALGS = 'algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA Ed25519"'

# Reason -> (HTTP status, RFC error, WWW-Authenticate of a resource request)
GOLDEN: dict[Reason, tuple[int, str, str]] = {
    Reason.OK: (200, "", ""),
    Reason.AUTHORIZATION_MISSING: (401, "", "DPoP " + ALGS),
    Reason.AUTHORIZATION_MULTIPLE: (
        400,
        "invalid_request",
        'DPoP error="invalid_request", '
        'error_description="More than one Authorization header", ' + ALGS,
    ),
    Reason.AUTHORIZATION_MALFORMED: (
        400,
        "invalid_request",
        'DPoP error="invalid_request", error_description="Malformed Authorization header", ' + ALGS,
    ),
    Reason.AUTHORIZATION_SCHEME_UNSUPPORTED: (401, "", "DPoP " + ALGS),
    Reason.BEARER_NOT_ALLOWED: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="DPoP-bound access token required", ' + ALGS,
    ),
    Reason.TOKEN_BOUND_SENT_AS_BEARER: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", '
        'error_description="DPoP-bound access token presented as Bearer", ' + ALGS,
    ),
    Reason.PROOF_MISSING: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof missing", ' + ALGS,
    ),
    Reason.PROOF_MULTIPLE: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="More than one DPoP proof", ' + ALGS,
    ),
    Reason.PROOF_TOO_LARGE: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof too large", ' + ALGS,
    ),
    Reason.PROOF_MALFORMED: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof is not a well-formed JWS", ' + ALGS,
    ),
    Reason.PROOF_TYP_INVALID: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof typ must be dpop+jwt", ' + ALGS,
    ),
    Reason.PROOF_ALG_NOT_ALLOWED: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof alg not allowed", ' + ALGS,
    ),
    Reason.PROOF_CRIT_UNSUPPORTED: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof crit not supported", ' + ALGS,
    ),
    Reason.PROOF_JWK_MISSING: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof jwk missing", ' + ALGS,
    ),
    Reason.PROOF_JWK_PRIVATE: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof jwk contains a private key", ' + ALGS,
    ),
    Reason.PROOF_JWK_INVALID: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof jwk invalid for alg", ' + ALGS,
    ),
    Reason.PROOF_SIGNATURE_INVALID: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof signature invalid", ' + ALGS,
    ),
    Reason.PROOF_CLAIMS_INVALID: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof claims invalid", ' + ALGS,
    ),
    Reason.PROOF_JTI_INVALID: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof jti missing or invalid", ' + ALGS,
    ),
    Reason.PROOF_HTM_MISMATCH: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof htm does not match", ' + ALGS,
    ),
    Reason.PROOF_HTU_MISMATCH: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof htu does not match", ' + ALGS,
    ),
    Reason.PROOF_IAT_INVALID: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof iat missing or invalid", ' + ALGS,
    ),
    Reason.PROOF_IAT_TOO_OLD: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof iat too old", ' + ALGS,
    ),
    Reason.PROOF_IAT_IN_FUTURE: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof iat in the future", ' + ALGS,
    ),
    Reason.PROOF_ATH_MISSING: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof ath missing", ' + ALGS,
    ),
    Reason.PROOF_ATH_MISMATCH: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", '
        'error_description="DPoP proof ath does not match", ' + ALGS,
    ),
    Reason.NONCE_REQUIRED: (
        401,
        "use_dpop_nonce",
        'DPoP error="use_dpop_nonce", error_description="DPoP nonce required", ' + ALGS,
    ),
    Reason.NONCE_INVALID: (
        401,
        "use_dpop_nonce",
        'DPoP error="use_dpop_nonce", error_description="DPoP nonce invalid", ' + ALGS,
    ),
    Reason.NONCE_EXPIRED: (
        401,
        "use_dpop_nonce",
        'DPoP error="use_dpop_nonce", error_description="DPoP nonce expired", ' + ALGS,
    ),
    Reason.REPLAYED: (
        401,
        "invalid_dpop_proof",
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof replayed", ' + ALGS,
    ),
    Reason.TOKEN_TOO_LARGE: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token too large", ' + ALGS,
    ),
    Reason.TOKEN_MALFORMED: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token malformed", ' + ALGS,
    ),
    Reason.TOKEN_ALG_NOT_ALLOWED: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token alg not allowed", ' + ALGS,
    ),
    Reason.TOKEN_ISSUER_UNKNOWN: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token issuer not trusted", ' + ALGS,
    ),
    Reason.TOKEN_KEY_UNKNOWN: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token signing key unknown", ' + ALGS,
    ),
    Reason.TOKEN_SIGNATURE_INVALID: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token signature invalid", ' + ALGS,
    ),
    Reason.TOKEN_EXPIRED: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token expired", ' + ALGS,
    ),
    Reason.TOKEN_NOT_YET_VALID: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token not yet valid", ' + ALGS,
    ),
    Reason.TOKEN_AUDIENCE_INVALID: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token audience invalid", ' + ALGS,
    ),
    Reason.TOKEN_CLAIMS_INVALID: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token claims invalid", ' + ALGS,
    ),
    Reason.TOKEN_NOT_BOUND: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token is not DPoP-bound", ' + ALGS,
    ),
    Reason.JKT_MISMATCH: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Invalid DPoP key binding", ' + ALGS,
    ),
    Reason.KEY_SOURCE_UNAVAILABLE: (503, "", ""),
    Reason.REPLAY_STORE_UNAVAILABLE: (503, "", ""),
    Reason.INTERNAL_ERROR: (500, "", ""),
    Reason.REQUEST_INVALID: (400, "invalid_request", ""),
    Reason.TOKEN_INACTIVE: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Access token is not active", ' + ALGS,
    ),
    Reason.INTROSPECTION_UNAVAILABLE: (503, "", ""),
    Reason.CLIENT_CERTIFICATE_MISSING: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Client certificate required", ' + ALGS,
    ),
    Reason.CLIENT_CERTIFICATE_INVALID: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Client certificate unreadable", ' + ALGS,
    ),
    Reason.CLIENT_CERTIFICATE_MISMATCH: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Invalid certificate binding", ' + ALGS,
    ),
    Reason.CLIENT_CERTIFICATE_UNTRUSTED: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", error_description="Client certificate not trusted", ' + ALGS,
    ),
    Reason.TOKEN_NOT_CERTIFICATE_BOUND: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", '
        'error_description="Certificate-bound access token required", ' + ALGS,
    ),
    Reason.TOKEN_NOT_SENDER_CONSTRAINED: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", '
        'error_description="Sender-constrained access token required", ' + ALGS,
    ),
    Reason.TOKEN_IN_QUERY: (
        400,
        "invalid_request",
        'DPoP error="invalid_request", '
        'error_description="Access token in the query not allowed", ' + ALGS,
    ),
    Reason.TOKEN_ISSUER_NOT_ALLOWED: (
        401,
        "invalid_token",
        'DPoP error="invalid_token", '
        'error_description="Access token issuer not allowed here", ' + ALGS,
    ),
}


def test_golden_table_covers_every_reason() -> None:
    assert set(GOLDEN) == set(Reason)
    assert set(CATALOGUE) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason), ids=[reason.value for reason in Reason])
def test_catalogue_matches_the_golden_table(reason: Reason) -> None:
    status, error, _ = GOLDEN[reason]
    assert (info(reason).http_status, info(reason).rfc_error.value) == (status, error)


class _TokensDenying:
    """Test double for the token validator: fails the request for one reason (or allows it)."""

    def __init__(self, reason: Reason) -> None:
        self.reason = reason

    def validate(self, token: str, now: float) -> TokenClaims:
        if self.reason is Reason.OK:
            return TokenClaims(issuer="https://as.example.com", jkt=proof_key().jkt)
        raise Denial(self.reason, "from the test double")


@pytest.mark.parametrize("reason", list(Reason), ids=[reason.value for reason in Reason])
def test_engine_reports_each_reason_as_the_golden_table_says(reason: Reason) -> None:
    verifier = make_verifier(tokens=_TokensDenying(reason))
    decision = verifier.verify(resource_facts())
    status, error, challenge = GOLDEN[reason]
    assert decision.reason is reason
    assert decision.allow is (reason is Reason.OK)
    assert (decision.http_status, decision.rfc_error.value) == (status, error)
    assert decision.www_authenticate == challenge


# --- a few in full, produced from real requests -------------------------------------------


def test_no_credentials_challenge_in_full() -> None:
    decision = make_verifier().verify(resource_facts(authorization=()))
    assert decision.www_authenticate == (
        'DPoP algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA Ed25519"'
    )
    assert decision.http_status == 401


def test_bad_signature_challenge_in_full() -> None:
    token = make_token()
    proof = flip_signature_bit(make_proof(access_token=token))
    decision = make_verifier().verify(resource_facts(token=token, proof=proof))
    assert decision.www_authenticate == (
        'DPoP error="invalid_dpop_proof", error_description="DPoP proof signature invalid", '
        'algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA Ed25519"'
    )
    assert decision.http_status == 401


def test_expired_token_challenge_in_full() -> None:
    token = make_token(now=NOW - 3600)
    decision = make_verifier().verify(resource_facts(token=token))
    assert decision.www_authenticate == (
        'DPoP error="invalid_token", error_description="Access token expired", '
        'algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA Ed25519"'
    )


def test_nonce_challenge_in_full() -> None:
    keys = NonceKeys(current=b"k" * 32)
    facts = resource_facts(policy=Policy(nonce_required=True))
    decision = make_verifier(nonce_keys=keys).verify(facts)
    assert decision.www_authenticate == (
        'DPoP error="use_dpop_nonce", error_description="DPoP nonce required", '
        'algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA Ed25519"'
    )
    assert decision.dpop_nonce == issue_nonce(keys, NOW)


def test_configured_algs_are_advertised() -> None:
    decision = make_verifier(proof_algs=("ES256", "EdDSA")).verify(resource_facts(authorization=()))
    assert decision.www_authenticate == 'DPoP algs="ES256 EdDSA"'


def test_fault_has_no_challenge() -> None:
    decision = make_verifier(replay=UnavailableReplayStore()).verify(resource_facts())
    assert (decision.reason, decision.http_status, decision.www_authenticate) == (
        Reason.REPLAY_STORE_UNAVAILABLE,
        503,
        "",
    )


# --- catalogue invariants -------------------------------------------------------------------


def test_codes_are_stable_snake_case_names() -> None:
    for reason in Reason:
        assert reason.value == reason.name.lower()
        assert re.fullmatch(r"[a-z][a-z0-9_]*", reason.value)


def test_messages_are_header_safe() -> None:
    for reason in Reason:
        message = info(reason).message
        assert message and re.fullmatch(r"[ -~]+", message), reason
        assert '"' not in message and "\\" not in message, reason


def test_rfc_error_families() -> None:
    for reason in Reason:
        error = info(reason).rfc_error
        if reason.name.startswith("NONCE_"):
            assert error is RfcError.USE_DPOP_NONCE
        elif reason.name.startswith("PROOF_") or reason is Reason.REPLAYED:
            assert error is RfcError.INVALID_DPOP_PROOF
        elif reason is Reason.TOKEN_IN_QUERY:  # RFC 6750 §3.1: more than one method
            assert error is RfcError.INVALID_REQUEST
        elif reason.name.startswith(("TOKEN_", "CLIENT_CERTIFICATE_")):
            assert error is RfcError.INVALID_TOKEN
        if info(reason).http_status >= 500:
            assert error is RfcError.NONE


def test_denial_carries_code_and_detail() -> None:
    denial = Denial(Reason.PROOF_HTU_MISMATCH, "htu invalid")
    assert (denial.reason, denial.detail, str(denial)) == (
        Reason.PROOF_HTU_MISMATCH,
        "htu invalid",
        "proof_htu_mismatch: htu invalid",
    )
    assert str(Denial(Reason.REPLAYED)) == "replayed"


def test_challenge_quoting() -> None:
    assert quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
    assert quote("line\r\nbreak\x00é") == '"linebreak"'
    assert dpop_challenge(RfcError.INVALID_TOKEN, "", DEFAULT_PROOF_ALGS[:1]) == (
        'DPoP error="invalid_token", algs="ES256"'
    )
    assert dpop_challenge(RfcError.NONE, "ignored", ()) == 'DPoP algs=""'


def test_grpc_codes_are_the_google_rpc_wire_values() -> None:
    from google.rpc import code_pb2  # type: ignore[import-untyped]

    from verifier.domain.reasons import GrpcCode

    for code in GrpcCode:
        assert code.value == code_pb2.Code.Value(code.name), code


# The gRPC status an ext_authz denial carries, by HTTP status (Envoy maps it back the same way).
_GRPC_BY_HTTP = {200: 0, 400: 3, 401: 16, 500: 13, 503: 14}


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_each_row_maps_every_wire_consistently(reason: Reason) -> None:
    row = CATALOGUE[reason]
    assert int(row.grpc_code) == _GRPC_BY_HTTP[row.http_status]
    credentials_not_at_fault = (
        row.http_status in (200, 500, 503) or reason is Reason.REQUEST_INVALID
    )
    assert row.challenge is not credentials_not_at_fault


def test_the_readme_table_lists_every_reason() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [r.value for r in Reason if f"| `{r.value}` |" not in readme]
    assert missing == []
