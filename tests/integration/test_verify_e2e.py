"""End to end: the real ``dpop-verifier serve`` process, real gRPC over loopback, the real engine.

Each test sends what a gateway would send and asserts the decision's reason code, the HTTP
status and the headers to send back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis_server import RedisServer
from tests.support.service import ServiceProcess, TestIssuer, dpop_request, running_service
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.cli.mint import KeyPair, encode_jws, generate_key, make_proof
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS, b64url_encode

URL = "https://api.test/orders"
NONCE_SECRET = "n" * 48


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[ServiceProcess]:
    with running_service(tmp_path_factory.mktemp("svc"), issuer, allow_explain=True) as svc:
        yield svc


@pytest.fixture(scope="module")
def client() -> KeyPair:
    return generate_key("ES256")


def reason(response: pb.VerifyResponse) -> str:
    return response.reason_code


@pytest.mark.parametrize("alg", DEFAULT_PROOF_ALGS)
def test_valid_proof_of_every_default_algorithm_is_allowed(
    service: ServiceProcess, issuer: TestIssuer, alg: str
) -> None:
    client = generate_key(alg)
    token = issuer.token(client, subject="alice", scope="read write", client_id="app-1")
    response = service.verify(**dpop_request(client, token))
    assert response.decision == pb.DECISION_ALLOW, response
    assert response.reason == pb.REASON_OK and response.http_status == 200
    assert response.jkt == client.jkt and response.alg == alg and response.jti
    assert (response.claims.iss, response.claims.sub) == ("https://issuer.test", "alice")
    assert (response.claims.client_id, response.claims.scope) == ("app-1", "read write")
    assert not response.www_authenticate and not response.dpop_nonce


def test_same_proof_twice_is_a_replay(
    service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    request = dpop_request(client, issuer.token(client))
    assert service.verify(**request).decision == pb.DECISION_ALLOW
    second = service.verify(**request)
    assert second.decision == pb.DECISION_DENY
    assert reason(second) == "replayed" and second.http_status == 401
    assert second.www_authenticate.startswith('DPoP error="invalid_dpop_proof"')


def _forged(client: KeyPair, header: dict[str, Any], payload: dict[str, Any]) -> str:
    return encode_jws(header, payload, client.alg, client.private_key)


def _claims(token: str, **overrides: Any) -> dict[str, Any]:
    import hashlib

    payload: dict[str, Any] = {
        "jti": f"j-{time.monotonic_ns()}",
        "htm": "GET",
        "htu": URL,
        "iat": int(time.time()),
        "ath": b64url_encode(hashlib.sha256(token.encode()).digest()),
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


BAD_PROOFS = {
    "proof_missing": lambda c, t: [],
    "proof_multiple": lambda c, t: [make_proof(c, "GET", URL, access_token=t)] * 2,
    "proof_malformed": lambda c, t: ["not.a.jws!"],
    "proof_typ_invalid": lambda c, t: [
        _forged(c, {"typ": "jwt", "alg": c.alg, "jwk": c.public_jwk}, _claims(t))
    ],
    "proof_alg_not_allowed": lambda c, t: [
        _forged(c, {"typ": "dpop+jwt", "alg": "none", "jwk": c.public_jwk}, _claims(t))
    ],
    "proof_jwk_missing": lambda c, t: [_forged(c, {"typ": "dpop+jwt", "alg": c.alg}, _claims(t))],
    "proof_signature_invalid": lambda c, t: [
        _forged(
            generate_key("ES256"),
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": c.public_jwk},
            _claims(t),
        )
    ],
    "proof_htm_mismatch": lambda c, t: [make_proof(c, "POST", URL, access_token=t)],
    "proof_htu_mismatch": lambda c, t: [make_proof(c, "GET", URL + "/other", access_token=t)],
    "proof_iat_too_old": lambda c, t: [
        make_proof(c, "GET", URL, access_token=t, iat=time.time() - 3600)
    ],
    "proof_iat_in_future": lambda c, t: [
        make_proof(c, "GET", URL, access_token=t, iat=time.time() + 3600)
    ],
    "proof_ath_missing": lambda c, t: [make_proof(c, "GET", URL)],
    "proof_ath_mismatch": lambda c, t: [make_proof(c, "GET", URL, access_token=t + "x")],
    "proof_jti_invalid": lambda c, t: [
        _forged(c, {"typ": "dpop+jwt", "alg": c.alg, "jwk": c.public_jwk}, _claims(t, jti=None))
    ],
    "jkt_mismatch": lambda c, t: [make_proof(generate_key("ES256"), "GET", URL, access_token=t)],
}


@pytest.mark.parametrize("expected", sorted(BAD_PROOFS))
def test_each_class_of_bad_proof_is_denied_with_its_reason(
    service: ServiceProcess, issuer: TestIssuer, client: KeyPair, expected: str
) -> None:
    token = issuer.token(client)
    response = service.verify(
        method="GET",
        target_uri=URL,
        authorization=[f"DPoP {token}"],
        dpop=BAD_PROOFS[expected](client, token),
    )
    assert response.decision == pb.DECISION_DENY
    assert reason(response) == expected
    assert response.http_status == 401
    assert response.rfc_error in ("invalid_dpop_proof", "invalid_token")
    assert response.www_authenticate.startswith(f'DPoP error="{response.rfc_error}"')
    assert 'algs="ES256 ' in response.www_authenticate


def test_token_problems_are_denied_with_their_reason(
    service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    cases = {
        "token_expired": issuer.token(client, now=time.time() - 3600, lifetime=60),
        "token_audience_invalid": issuer.token(client, audience="https://other.test"),
        "token_not_bound": issuer.token(None),
        "token_signature_invalid": issuer.token(client)[:-4] + "AAAA",
    }
    for expected, token in cases.items():
        response = service.verify(**dpop_request(client, token))
        assert reason(response) == expected, (expected, response)
        assert response.rfc_error == "invalid_token" and response.http_status == 401


def test_bearer_downgrade_and_missing_credentials(
    service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    bound = issuer.token(client)
    downgrade = service.verify(method="GET", target_uri=URL, authorization=[f"Bearer {bound}"])
    assert reason(downgrade) == "token_bound_sent_as_bearer"
    assert downgrade.www_authenticate.startswith('DPoP error="invalid_token"')

    missing = service.verify(method="GET", target_uri=URL)
    assert reason(missing) == "authorization_missing" and missing.http_status == 401
    assert missing.www_authenticate.startswith('DPoP algs="ES256 ')
    assert "error=" not in missing.www_authenticate


def test_proof_only_mode_returns_the_key_thumbprint_to_bind(service: ServiceProcess) -> None:
    client = generate_key("ES256")
    url = "https://issuer.test/token"
    proof = make_proof(client, "POST", url)
    allowed = service.verify(method="POST", target_uri=url, dpop=[proof], proof_only=True)
    assert allowed.decision == pb.DECISION_ALLOW and allowed.jkt == client.jkt
    again = service.verify(method="POST", target_uri=url, dpop=[proof], proof_only=True)
    assert reason(again) == "replayed"
    assert again.http_status == 400 and not again.www_authenticate  # RFC 9449 §5


def test_explain_returns_every_check(
    service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    request = dpop_request(client, issuer.token(client), url=URL)
    request["dpop"] = [make_proof(client, "GET", URL + "/x", access_token=issuer.token(client))]
    response = service.verify(explain=True, **request)
    names = [(check.name, check.passed) for check in response.checks]
    assert ("proof.signature", True) in names
    assert names[-1] == ("proof.claims", False)


def test_garbage_in_every_field_is_a_denial_never_an_error(service: ServiceProcess) -> None:
    junk = ["", "\x00" * 10, "DPoP " + "A" * 20000, "é" * 100, "a.b.c", "DPoP a,b"]
    for value in junk:
        response = service.verify(
            method=value[:40], target_uri=value, authorization=[value], dpop=[value, value[:5]]
        )
        assert response.decision == pb.DECISION_DENY
        assert reason(response) not in ("internal_error", "ok")


def test_nonce_challenge_then_retry_succeeds(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair
) -> None:
    env = {"DPOP_NONCE_REQUIRED": "true", "DPOP_NONCE_SECRET": NONCE_SECRET}
    with running_service(tmp_path, issuer, env) as service:
        token = issuer.token(client)
        challenge = service.verify(**dpop_request(client, token))
        assert reason(challenge) == "nonce_required"
        assert challenge.rfc_error == "use_dpop_nonce" and challenge.http_status == 401
        assert challenge.www_authenticate.startswith('DPoP error="use_dpop_nonce"')
        # A single DPoP challenge (oauth4webapi and others recognise only that).
        assert challenge.www_authenticate.count("error=") == 1
        assert "Bearer" not in challenge.www_authenticate
        assert challenge.dpop_nonce

        retry = service.verify(**dpop_request(client, token, nonce=challenge.dpop_nonce))
        assert retry.decision == pb.DECISION_ALLOW
        assert not retry.dpop_nonce  # a fresh nonce is not offered on every request

        forged = service.verify(**dpop_request(client, token, nonce="A" * 34))
        assert reason(forged) == "nonce_invalid" and forged.dpop_nonce


def test_redis_down_fails_closed_then_recovers(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair, redis_server: RedisServer
) -> None:
    env = {"DPOP_REPLAY_URL": redis_server.url}
    with running_service(tmp_path, issuer, env) as service:
        service.wait_health("SERVING")
        token = issuer.token(client)
        request = dpop_request(client, token)
        assert service.verify(**request).decision == pb.DECISION_ALLOW
        assert reason(service.verify(**request)) == "replayed"

        redis_server.kill()
        started = time.monotonic()
        denials = [service.verify(**dpop_request(client, token)) for _ in range(20)]
        elapsed = time.monotonic() - started
        assert {reason(d) for d in denials} == {"replay_store_unavailable"}
        assert all(d.http_status == 503 and not d.www_authenticate for d in denials)
        assert elapsed < 5.0, f"20 denials took {elapsed:.2f}s: timeouts are not bounded"
        service.wait_health("NOT_SERVING")

        redis_server.restart()
        service.wait_health("SERVING")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            response = service.verify(**dpop_request(client, token))
            if response.decision == pb.DECISION_ALLOW:
                break
            time.sleep(0.2)
        assert response.decision == pb.DECISION_ALLOW, response
