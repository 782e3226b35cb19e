"""End to end through a real Envoy: client -> Envoy (ext_authz gRPC) -> the verifier service ->
Envoy -> an echo upstream, all real processes on loopback, Envoy running the repository's
``examples/envoy/envoy.yaml``.

Each denial is asserted on what the client gets (status, ``WWW-Authenticate``, ``DPoP-Nonce``,
JSON body) and on the reason code in the service's decision log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envoy import EchoUpstream, EnvoyProcess, render_envoy_config
from tests.support.http_requests import HOST, Reply, assert_denied, dpop_headers, logged_decision
from tests.support.http_requests import send as send_to
from tests.support.redis_server import RedisServer
from tests.support.service import ServiceProcess, TestIssuer, running_service
from verifier.cli.mint import KeyPair, generate_key

NONCE_SECRET = "n" * 48
IDENTITY = ("x-dpop-jkt", "x-auth-subject", "x-auth-client-id", "x-auth-scope", "x-auth-issuer")
ROUTES = [
    {"path_prefix": "/legacy", "mode": "allow-bearer"},
    {"path_prefix": "/report", "mode": "report-only"},
    {"path_prefix": "/public", "mode": "off"},
    {"host": HOST, "path_prefix": "/nonce", "mode": "require", "nonce_required": True},
]


def send(
    envoy: EnvoyProcess,
    path: str,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    method: str = "GET",
) -> Reply:
    """One HTTP/1.1 request through Envoy (see :func:`tests.support.http_requests.send`)."""
    return send_to(("127.0.0.1", envoy.port), path, headers, method=method)


def decision_of(reply: Reply, *services: ServiceProcess) -> dict[str, Any]:
    """The decision one of the services logged for ``reply``'s request."""
    return logged_decision(reply.trace_id, "Check", *services)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoUpstream]:
    echo = EchoUpstream()
    yield echo
    echo.close()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[ServiceProcess]:
    with running_service(
        tmp_path_factory.mktemp("svc"), issuer, routes=ROUTES, nonce_secret=NONCE_SECRET
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def envoy(service: ServiceProcess, upstream: EchoUpstream) -> Iterator[EnvoyProcess]:
    host, port = service.address.rsplit(":", 1)
    with EnvoyProcess(render_envoy_config([(host, int(port))], upstream.address)) as proxy:
        yield proxy


@pytest.fixture
def client() -> KeyPair:
    return generate_key("ES256")


def test_valid_request_reaches_the_upstream_with_identity_headers(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    token = issuer.token(client, subject="alice", client_id="app-1", scope="read write")
    path = "/orders/42?q=a%20b&x=%2F"  # the query (undecoded) is not part of htu
    reply = send(envoy, path, dpop_headers(client, token, "GET", "/orders/42"))
    assert reply.status == 200, reply
    received = dict(reply.upstream_headers())
    assert reply.json()["path"] == path
    assert received["x-dpop-jkt"] == client.jkt
    assert received["x-auth-subject"] == "alice"
    assert received["x-auth-client-id"] == "app-1"
    assert received["x-auth-scope"] == "read write"
    assert received["x-auth-issuer"] == "https://issuer.test"
    assert "x-dpop-report-only" not in received
    logged = decision_of(reply, service)
    assert (logged["reason"], logged["route"]) == ("ok", "default")


def test_replayed_proof_is_denied(
    envoy: EnvoyProcess, service: ServiceProcess, upstream: EchoUpstream, issuer: TestIssuer,
    client: KeyPair,
) -> None:  # fmt: skip
    headers = dpop_headers(client, issuer.token(client), "POST", "/orders")
    assert send(envoy, "/orders", headers, method="POST").status == 200
    reached = len(upstream.received)
    reply = send(envoy, "/orders", headers, method="POST")
    assert_denied(reply, 401, "invalid_dpop_proof")
    assert decision_of(reply, service)["reason"] == "replayed"
    assert len(upstream.received) == reached  # never reached the upstream


def _second_proof(client: KeyPair, token: str) -> tuple[str, str]:
    return dpop_headers(client, token, "GET", "/orders")[1]


@pytest.mark.parametrize(
    ("make_headers", "status", "error", "reason"),
    [
        # A proof for another URL.
        (lambda c, t: dpop_headers(c, t, "GET", "/admin"), 401, "invalid_dpop_proof",
         "proof_htu_mismatch"),
        # A proof for another method.
        (lambda c, t: dpop_headers(c, t, "DELETE", "/orders"), 401, "invalid_dpop_proof",
         "proof_htm_mismatch"),
        # No proof at all.
        (lambda c, t: [("authorization", f"DPoP {t}")], 401, "invalid_dpop_proof",
         "proof_missing"),
        # Bearer downgrade of a DPoP-bound token (RFC 9449 §7.2).
        (lambda c, t: [("authorization", f"Bearer {t}")], 401, "invalid_token",
         "token_bound_sent_as_bearer"),
        # Two DPoP headers: Envoy joins them with a comma.
        (lambda c, t: [*dpop_headers(c, t, "GET", "/orders"), _second_proof(c, t)],
         401, "invalid_dpop_proof", "proof_multiple"),
    ],
)  # fmt: skip
def test_bad_requests_are_denied_with_the_right_challenge(
    envoy: EnvoyProcess, service: ServiceProcess, upstream: EchoUpstream, issuer: TestIssuer,
    client: KeyPair, make_headers: Any, status: int, error: str, reason: str,
) -> None:  # fmt: skip
    reached = len(upstream.received)
    reply = send(envoy, "/orders", make_headers(client, issuer.token(client)))
    assert_denied(reply, status, error)
    assert decision_of(reply, service)["reason"] == reason
    assert len(upstream.received) == reached


def test_no_credentials_get_a_bare_challenge(envoy: EnvoyProcess, service: ServiceProcess) -> None:
    reply = send(envoy, "/orders")
    assert reply.status == 401
    assert reply.header("www-authenticate").startswith('DPoP algs="')
    assert reply.json()["error"] == "unauthorized"
    assert decision_of(reply, service)["reason"] == "authorization_missing"


def test_two_authorization_headers_are_a_bad_request(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    token = issuer.token(client)
    headers = [*dpop_headers(client, token, "GET", "/orders"), ("authorization", f"DPoP {token}")]
    reply = send(envoy, "/orders", headers)
    assert reply.status == 400 and reply.json()["error"] == "invalid_request"
    assert decision_of(reply, service)["reason"] == "authorization_multiple"


def test_nonce_challenge_then_retry_with_the_nonce(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    token = issuer.token(client, subject="bob")
    first = send(
        envoy, "/nonce/pay", dpop_headers(client, token, "POST", "/nonce/pay"), method="POST"
    )
    assert_denied(first, 401, "use_dpop_nonce")
    nonce = first.header("dpop-nonce")
    assert nonce
    assert decision_of(first, service)["reason"] == "nonce_required"

    retry = send(
        envoy, "/nonce/pay", dpop_headers(client, token, "POST", "/nonce/pay", nonce=nonce),
        method="POST",
    )  # fmt: skip
    assert retry.status == 200, retry
    assert dict(retry.upstream_headers())["x-auth-subject"] == "bob"


SPOOFED = [(name, "spoofed") for name in (*IDENTITY, "x-dpop-report-only")] + [
    ("x-auth-subject", "spoofed-again")  # a second line of the same header
]


def _identity_received(reply: Reply) -> list[tuple[str, str]]:
    names = {*IDENTITY, "x-dpop-report-only"}
    return [(k, v) for k, v in reply.upstream_headers() if k in names]


def test_spoofed_identity_headers_never_reach_the_upstream(
    envoy: EnvoyProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    # A DPoP request: every identity header is ours, exactly once.
    token = issuer.token(client, subject="alice", client_id="app-1", scope="read")
    reply = send(envoy, "/orders", [*dpop_headers(client, token, "GET", "/orders"), *SPOOFED])
    assert reply.status == 200, reply
    assert sorted(_identity_received(reply)) == sorted(
        [("x-dpop-jkt", client.jkt), ("x-auth-subject", "alice"), ("x-auth-client-id", "app-1"),
         ("x-auth-scope", "read"), ("x-auth-issuer", "https://issuer.test")]
    )  # fmt: skip

    # A plain Bearer token where the route allows it: no key, so the client's x-dpop-jkt goes.
    bearer = issuer.token(None, subject="legacy-user")
    reply = send(envoy, "/legacy/x", [("authorization", f"Bearer {bearer}"), *SPOOFED])
    assert reply.status == 200, reply
    received = _identity_received(reply)
    assert ("x-auth-subject", "legacy-user") in received
    assert all(value != "spoofed" and value != "spoofed-again" for _, value in received)
    assert "x-dpop-jkt" not in dict(received)

    # A route with verification off: nothing to vouch for, every spoofed header is removed.
    reply = send(envoy, "/public/logo.png", SPOOFED)
    assert reply.status == 200 and _identity_received(reply) == []


def test_plain_bearer_passes_only_where_the_route_allows_it(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer
) -> None:
    bearer = issuer.token(None, subject="legacy-user")
    assert send(envoy, "/legacy/x", [("authorization", f"Bearer {bearer}")]).status == 200
    reply = send(envoy, "/orders", [("authorization", f"Bearer {bearer}")])
    assert_denied(reply, 401, "invalid_token")
    assert decision_of(reply, service)["reason"] == "bearer_not_allowed"


def test_report_only_lets_a_bad_request_through_and_records_it(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    token = issuer.token(client, subject="alice")
    headers = [*dpop_headers(client, token, "GET", "/elsewhere"), ("x-dpop-report-only", "none")]
    reply = send(envoy, "/report/orders", headers)
    assert reply.status == 200, reply
    identity = _identity_received(reply)
    assert identity == [("x-dpop-report-only", "proof_htu_mismatch")]  # no identity vouched
    logged = decision_of(reply, service)
    assert (logged["decision"], logged["reason"], logged["enforced"]) == (
        "allow", "proof_htu_mismatch", False,
    )  # fmt: skip
    assert any(
        "report-only: would deny GET http://api.test/report/orders with proof_htu_mismatch" in line
        for line in service.stderr_lines
    )
    # A valid request on the same route is simply allowed, with the identity headers.
    good = send(envoy, "/report/orders", dpop_headers(client, token, "GET", "/report/orders"))
    assert good.status == 200 and dict(good.upstream_headers())["x-auth-subject"] == "alice"
    assert "x-dpop-report-only" not in dict(good.upstream_headers())


def _answered_by(reply: Reply, replicas: list[ServiceProcess]) -> tuple[int, str]:
    """Which replica decided ``reply``'s request, and its reason code."""
    decision = decision_of(reply, *replicas)
    marker = f'"trace_id":"{reply.trace_id}"'
    index = next(
        i
        for i, s in enumerate(replicas)
        if any('"event":"decision"' in line and marker in line for line in list(s.stderr_lines))
    )
    return index, decision["reason"]


def test_two_replicas_behind_envoy_share_replay_state(
    tmp_path: Path, issuer: TestIssuer, upstream: EchoUpstream, redis_server: RedisServer
) -> None:
    with (
        running_service(tmp_path, issuer, replay_url=redis_server.url) as first,
        running_service(tmp_path, issuer, replay_url=redis_server.url) as second,
    ):
        replicas = [first, second]
        endpoints = [(s.address.rsplit(":")[0], int(s.address.rsplit(":")[1])) for s in replicas]
        with EnvoyProcess(render_envoy_config(endpoints, upstream.address)) as proxy:
            client = generate_key("ES256")
            headers = dpop_headers(client, issuer.token(client), "GET", "/orders")
            original = send(proxy, "/orders", headers)
            assert original.status == 200
            accepted_by, reason = _answered_by(original, replicas)
            assert reason == "ok"
            # Envoy balances round-robin, so the replays reach both replicas.
            answers = []
            for _ in range(3):
                replay = send(proxy, "/orders", headers)
                assert_denied(replay, 401, "invalid_dpop_proof")
                answers.append(_answered_by(replay, replicas))
            assert all(reason == "replayed" for _, reason in answers), answers
            other = 1 - accepted_by
            assert (other, "replayed") in answers, (
                answers
            )  # denied by the replica that never saw it
            served = proxy.upstream_requests("dpop_verifier")
            assert sorted(served.values()) == [2, 2], served


def test_verify_front_door_uses_the_same_routes(
    service: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    bearer = issuer.token(None, subject="legacy-user")
    legacy = service.verify(
        method="GET", target_uri=f"http://{HOST}/legacy/x", authorization=[f"Bearer {bearer}"]
    )
    assert (legacy.reason_code, legacy.http_status) == ("ok", 200)
    strict = service.verify(
        method="GET", target_uri=f"http://{HOST}/orders", authorization=[f"Bearer {bearer}"]
    )
    assert strict.reason_code == "bearer_not_allowed"
    report = service.verify(method="GET", target_uri=f"http://{HOST}/report/x")
    assert (report.reason_code, report.enforced) == ("authorization_missing", False)


def test_health_reports_the_check_service(service: ServiceProcess) -> None:
    assert service.health_status("envoy.service.auth.v3.Authorization") == "SERVING"
