"""End to end through real gateways: client -> NGINX (``auth_request``) or Caddy
(``forward_auth``) -> the verifier's forward-auth listener -> the gateway -> an echo upstream,
all real processes on loopback, each gateway running the repository's example configuration
with only its placeholders filled (``examples/nginx/nginx.conf``, ``examples/caddy/Caddyfile``).

Each answer is asserted on what the client gets (status, ``WWW-Authenticate``, ``DPoP-Nonce``,
JSON body), on what the upstream received, and on the reason code in the service's decision
log. One service and one upstream (conftest.py) and one process per gateway serve the module.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest

from tests.gateways.conftest import DOWN_ISSUER, NONCE_SECRET
from tests.support.envoy import EchoUpstream
from tests.support.gateways import (
    GATEWAYS,
    GatewayProcess,
    Reply,
    assert_denied,
    decision_of,
    dpop_headers,
    missing_gateway,
    send,
)
from tests.support.net import free_port
from tests.support.service import AUDIENCE, ServiceProcess, TestIssuer, running_service
from verifier.cli.mint import KeyPair, generate_key, make_access_token
from verifier.dpop.nonce import NonceKeys, issue_nonce

NONCE_LIFETIME = 300  # the service's default (DPOP_NONCE_LIFETIME_SECONDS)
IDENTITY = ("x-dpop-jkt", "x-auth-subject", "x-auth-client-id", "x-auth-scope", "x-auth-issuer")
FAILED_CLOSED = {"nginx": 503, "caddy": 502}
"""What each example answers when the verifier cannot be reached (never the upstream)."""


def identity_received(reply: Reply) -> list[tuple[str, str]]:
    names = {*IDENTITY, "x-dpop-report-only"}
    return [(k, v) for k, v in reply.upstream_headers() if k in names]


@pytest.fixture(scope="module", params=sorted(GATEWAYS))
def gateway(
    request: pytest.FixtureRequest, service: ServiceProcess, upstream: EchoUpstream
) -> Iterator[GatewayProcess]:
    kind = GATEWAYS[request.param]
    problem = missing_gateway(kind)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with GatewayProcess(kind, service.http_address, upstream.address) as proxy:
        yield proxy


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_valid_proof_reaches_the_upstream_with_identity_headers(
    gateway: GatewayProcess, service: ServiceProcess, issuer: TestIssuer, alg: str
) -> None:
    client = generate_key(alg)
    token = issuer.token(client, subject="alice", client_id="app-1", scope="read write")
    path = "/orders/42?q=a%20b&x=%2F"  # the query (undecoded) is not part of htu
    reply = send(gateway.address, path, dpop_headers(client, token, "GET", "/orders/42"))
    assert reply.status == 200, (reply, gateway.log())
    assert reply.json()["path"] == path
    assert sorted(identity_received(reply)) == sorted(
        [("x-dpop-jkt", client.jkt), ("x-auth-subject", "alice"), ("x-auth-client-id", "app-1"),
         ("x-auth-scope", "read write"), ("x-auth-issuer", "https://issuer.test")]
    )  # fmt: skip
    assert reply.header("dpop-nonce") == ""  # none offered outside nonce routes
    logged = decision_of(reply.trace_id, service)
    assert (logged["reason"], logged["alg"], logged["method"]) == ("ok", alg, "GET")


def test_percent_encoded_path_and_query_are_decided_as_sent(
    gateway: GatewayProcess, issuer: TestIssuer
) -> None:
    client = generate_key("ES256")
    token = issuer.token(client)
    path = "/files/a%20b/%C3%A9t%C3%A9.txt"
    reply = send(
        gateway.address, path + "?name=%C3%A9&x=1&x=2&empty=",
        dpop_headers(client, token, "GET", path),
    )  # fmt: skip
    assert reply.status == 200, reply
    assert reply.json()["path"] == path + "?name=%C3%A9&x=1&x=2&empty="
    # The same proof for the decoded path does not pass: the encoding is part of htu.
    other = send(gateway.address, path, dpop_headers(client, token, "GET", "/files/a b/été.txt"))
    assert_denied(other, 401, "invalid_dpop_proof")


def test_a_body_reaches_the_upstream_and_the_method_the_verifier(
    gateway: GatewayProcess, service: ServiceProcess, upstream: EchoUpstream, issuer: TestIssuer
) -> None:
    client = generate_key("ES256")
    body = bytes(range(256)) * 400  # 100 KiB: more than the verifier reads; it gets none
    reply = send(
        gateway.address, "/upload", dpop_headers(client, issuer.token(client), "POST", "/upload"),
        method="POST", body=body,
    )  # fmt: skip
    assert reply.status == 200, (reply, gateway.log())
    assert upstream.received[-1]["method"] == "POST"
    assert upstream.received[-1]["body"] == body
    assert decision_of(reply.trace_id, service)["method"] == "POST"


def test_replayed_proof_is_denied(
    gateway: GatewayProcess, service: ServiceProcess, upstream: EchoUpstream, issuer: TestIssuer
) -> None:
    client = generate_key("ES256")
    headers = dpop_headers(client, issuer.token(client), "POST", "/orders")
    assert send(gateway.address, "/orders", headers, method="POST").status == 200
    reached = len(upstream.received)
    reply = send(gateway.address, "/orders", headers, method="POST")
    assert_denied(reply, 401, "invalid_dpop_proof")
    assert decision_of(reply.trace_id, service)["reason"] == "replayed"
    assert len(upstream.received) == reached  # never reached the upstream


def _bad_signature(client: KeyPair, token: str) -> list[tuple[str, str]]:
    headers = dpop_headers(client, token, "GET", "/orders")
    proof = headers[1][1]
    head, _, signature = proof.rpartition(".")
    middle = len(signature) // 2
    flipped = "B" if signature[middle] == "A" else "A"
    return [headers[0], ("dpop", f"{head}.{signature[:middle]}{flipped}{signature[middle + 1 :]}")]


def _other_key(client: KeyPair, token: str) -> list[tuple[str, str]]:
    return dpop_headers(generate_key("ES256"), token, "GET", "/orders")


def _two_proofs(client: KeyPair, token: str) -> list[tuple[str, str]]:
    second = dpop_headers(client, token, "GET", "/orders")[1]
    return [*dpop_headers(client, token, "GET", "/orders"), second]


Headers = Callable[[KeyPair, str], list[tuple[str, str]]]


@pytest.mark.parametrize(
    ("make_headers", "error", "reason"),
    [
        pytest.param(_bad_signature, "invalid_dpop_proof", "proof_signature_invalid",
                     id="bad-signature"),
        pytest.param(lambda c, t: [("authorization", f"DPoP {t}")], "invalid_dpop_proof",
                     "proof_missing", id="missing-proof"),
        pytest.param(_other_key, "invalid_token", "jkt_mismatch", id="key-mismatch"),
        pytest.param(lambda c, t: [("authorization", f"Bearer {t}")], "invalid_token",
                     "token_bound_sent_as_bearer", id="bearer-downgrade"),
        pytest.param(lambda c, t: dpop_headers(c, t, "GET", "/admin"), "invalid_dpop_proof",
                     "proof_htu_mismatch", id="other-url"),
        pytest.param(lambda c, t: dpop_headers(c, t, "DELETE", "/orders"), "invalid_dpop_proof",
                     "proof_htm_mismatch", id="other-method"),
        pytest.param(_two_proofs, "invalid_dpop_proof", "proof_multiple", id="two-proofs"),
    ],
)  # fmt: skip
def test_bad_requests_are_denied_with_the_right_challenge(
    gateway: GatewayProcess, service: ServiceProcess, upstream: EchoUpstream, issuer: TestIssuer,
    make_headers: Headers, error: str, reason: str,
) -> None:  # fmt: skip
    client = generate_key("ES256")
    reached = len(upstream.received)
    reply = send(gateway.address, "/orders", make_headers(client, issuer.token(client)))
    assert_denied(reply, 401, error)
    assert decision_of(reply.trace_id, service)["reason"] == reason
    assert len(upstream.received) == reached


def test_no_credentials_get_a_bare_challenge(
    gateway: GatewayProcess, service: ServiceProcess
) -> None:
    reply = send(gateway.address, "/orders")
    assert reply.status == 401
    assert reply.header("www-authenticate").startswith('DPoP algs="')
    assert reply.header("cache-control") == "no-store"
    assert reply.json()["error"] == "unauthorized"
    assert decision_of(reply.trace_id, service)["reason"] == "authorization_missing"


def test_nonce_challenge_then_retry_with_the_nonce(
    gateway: GatewayProcess, service: ServiceProcess, issuer: TestIssuer
) -> None:
    client = generate_key("EdDSA")
    token = issuer.token(client, subject="bob")
    first = send(
        gateway.address, "/nonce/pay", dpop_headers(client, token, "POST", "/nonce/pay"),
        method="POST",
    )  # fmt: skip
    assert_denied(first, 401, "use_dpop_nonce")
    nonce = first.header("dpop-nonce")
    assert nonce
    assert decision_of(first.trace_id, service)["reason"] == "nonce_required"

    retry = send(
        gateway.address, "/nonce/pay",
        dpop_headers(client, token, "POST", "/nonce/pay", nonce=nonce), method="POST",
    )  # fmt: skip
    assert retry.status == 200, retry
    assert dict(retry.upstream_headers())["x-auth-subject"] == "bob"


def test_a_fresh_nonce_offered_on_success_reaches_the_client_only(
    gateway: GatewayProcess, service: ServiceProcess, issuer: TestIssuer
) -> None:
    keys = NonceKeys(NONCE_SECRET.encode(), lifetime=NONCE_LIFETIME, step=NONCE_LIFETIME / 30)
    old = issue_nonce(keys, time.time() - NONCE_LIFETIME * 0.7)  # past half its lifetime
    client = generate_key("ES256")
    token = issuer.token(client)
    reply = send(
        gateway.address, "/nonce/read", dpop_headers(client, token, "GET", "/nonce/read",
                                                     nonce=old),
    )  # fmt: skip
    assert reply.status == 200, reply
    fresh = reply.header("dpop-nonce")
    assert fresh and fresh != old
    assert ("x-dpop-jkt", client.jkt) in identity_received(reply)
    assert not [k for k, _ in reply.upstream_headers() if "nonce" in k]  # not upstream
    # The client's next proof carries it.
    again = send(
        gateway.address, "/nonce/read", dpop_headers(client, token, "GET", "/nonce/read",
                                                     nonce=fresh),
    )  # fmt: skip
    assert again.status == 200 and again.header("dpop-nonce") == ""
    assert decision_of(again.trace_id, service)["reason"] == "ok"


SPOOFED = [(name, "spoofed") for name in (*IDENTITY, "x-dpop-report-only")] + [
    ("x-auth-subject", "spoofed-again"),  # a second line of the same header
    ("x-dpop-nonce", "spoofed"),  # the Caddy example carries the verifier's nonce in it
]


def test_spoofed_identity_headers_never_reach_the_upstream(
    gateway: GatewayProcess, issuer: TestIssuer
) -> None:
    # A DPoP request: every identity header is the verifier's, exactly once.
    client = generate_key("ES256")
    token = issuer.token(client, subject="alice", client_id="app-1", scope="read")
    headers = [*dpop_headers(client, token, "GET", "/orders"), *SPOOFED]
    reply = send(gateway.address, "/orders", headers)
    assert reply.status == 200, reply
    assert sorted(identity_received(reply)) == sorted(
        [("x-dpop-jkt", client.jkt), ("x-auth-subject", "alice"), ("x-auth-client-id", "app-1"),
         ("x-auth-scope", "read"), ("x-auth-issuer", "https://issuer.test")]
    )  # fmt: skip
    assert reply.header("dpop-nonce") == ""

    # A plain Bearer token where the route allows it: no key, so the client's x-dpop-jkt goes.
    bearer = issuer.token(None, subject="legacy-user")
    reply = send(gateway.address, "/legacy/x", [("authorization", f"Bearer {bearer}"), *SPOOFED])
    assert reply.status == 200, reply
    received = identity_received(reply)
    assert ("x-auth-subject", "legacy-user") in received
    assert all(value not in ("spoofed", "spoofed-again") for _, value in received), received
    assert "x-dpop-jkt" not in dict(received)

    # A route with verification off: nothing vouched for, every spoofed header removed.
    reply = send(gateway.address, "/public/logo.png", SPOOFED)
    assert reply.status == 200 and identity_received(reply) == [], reply


FORGED_TARGET = [
    ("x-forwarded-method", "OPTIONS"), ("x-original-method", "OPTIONS"),
    ("x-forwarded-uri", "/public/x"), ("x-original-uri", "/public/x"),
    ("x-forwarded-host", "elsewhere.test"), ("x-forwarded-proto", "https"),
]  # fmt: skip


def test_a_client_cannot_choose_the_request_that_is_decided(
    gateway: GatewayProcess, service: ServiceProcess, issuer: TestIssuer
) -> None:
    # Forwarding headers naming an open route do not open /orders ...
    reply = send(gateway.address, "/orders", FORGED_TARGET)
    assert reply.status == 401, reply
    logged = decision_of(reply.trace_id, service)
    assert (logged["reason"], logged["route"], logged["method"]) == (
        "authorization_missing", "default", "GET",
    )  # fmt: skip
    # ... and a proof for the real request is judged against the real request.
    client = generate_key("ES256")
    headers = [*dpop_headers(client, issuer.token(client), "GET", "/orders"), *FORGED_TARGET]
    assert send(gateway.address, "/orders", headers).status == 200


def test_a_400_reaches_the_client_with_its_status(
    gateway: GatewayProcess, service: ServiceProcess, upstream: EchoUpstream, issuer: TestIssuer
) -> None:
    client = generate_key("ES256")
    token = issuer.token(client)
    reached = len(upstream.received)
    # Two credentials in one line (NGINX refuses two Authorization lines by itself).
    headers = [("authorization", f"DPoP {token}, DPoP {token}"),
               dpop_headers(client, token, "GET", "/orders")[1]]  # fmt: skip
    reply = send(gateway.address, "/orders", headers)
    assert_denied(reply, 400, "invalid_request")
    assert decision_of(reply.trace_id, service)["reason"] == "authorization_multiple"
    assert len(upstream.received) == reached


def test_a_431_reaches_the_client_with_its_status(
    gateway: GatewayProcess, upstream: EchoUpstream, issuer: TestIssuer
) -> None:
    client = generate_key("ES256")
    reached = len(upstream.received)
    filler = [(f"x-filler-{i}", "1") for i in range(110)]  # DPOP_HTTP_MAX_HEADER_FIELDS: 100
    headers = [*dpop_headers(client, issuer.token(client), "GET", "/orders"), *filler]
    reply = send(gateway.address, "/orders", headers)
    assert reply.status == 431, reply
    assert reply.json()["error"] == "invalid_request"
    assert len(upstream.received) == reached


def test_a_503_reaches_the_client_with_its_status(
    gateway: GatewayProcess, service: ServiceProcess, upstream: EchoUpstream
) -> None:
    client = generate_key("ES256")
    token = make_access_token(
        generate_key("ES256"), issuer=DOWN_ISSUER, jkt=client.jkt, audience=AUDIENCE
    )
    reached = len(upstream.received)
    reply = send(gateway.address, "/orders", dpop_headers(client, token, "GET", "/orders"))
    assert reply.status == 503, reply
    assert reply.header("www-authenticate") == ""
    assert reply.header("cache-control") == "no-store"
    assert reply.json()["error"] == "temporarily_unavailable"
    assert decision_of(reply.trace_id, service)["reason"] == "key_source_unavailable"
    assert len(upstream.received) == reached


def test_an_unreachable_verifier_fails_closed(
    gateway: GatewayProcess, upstream: EchoUpstream, issuer: TestIssuer
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    with GatewayProcess(gateway.gateway, nowhere, upstream.address) as cut_off:
        client = generate_key("ES256")
        reached = len(upstream.received)
        headers = dpop_headers(client, issuer.token(client), "GET", "/orders")
        reply = send(cut_off.address, "/orders", headers)
        assert reply.status == FAILED_CLOSED[gateway.gateway.name], reply
        assert len(upstream.received) == reached


def test_the_gateway_runs_its_example_with_only_the_placeholders_filled(
    gateway: GatewayProcess, service: ServiceProcess, upstream: EchoUpstream
) -> None:
    ran = (gateway.prefix / gateway.gateway.config_name).read_text(encoding="utf-8")
    values = {
        "LISTEN_PORT": str(gateway.port),
        "APP_HOST": upstream.address[0],
        "APP_PORT": str(upstream.address[1]),
        "VERIFIER_HOST": service.http_address.rpartition(":")[0],
        "VERIFIER_PORT": service.http_address.rpartition(":")[2],
        "PREFIX": str(gateway.prefix),
    }
    example = gateway.gateway.example.read_text(encoding="utf-8")
    assert set(re.findall(r"\$\{(\w+)\}", example)) == set(values)
    assert ran == re.sub(r"\$\{(\w+)\}", lambda m: values[m[1]], example)


@pytest.fixture(scope="module")
def untrusting_service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[ServiceProcess]:
    """A service that trusts no gateway on loopback (a documentation network only)."""
    env = {"DPOP_HTTP_LISTEN": "127.0.0.1:0", "DPOP_HTTP_TRUSTED_PROXIES": "192.0.2.0/24"}
    with running_service(tmp_path_factory.mktemp("untrusting"), issuer, env=env) as svc:
        yield svc


def test_a_gateway_the_verifier_does_not_trust_gets_no_decision(
    gateway: GatewayProcess, untrusting_service: ServiceProcess, upstream: EchoUpstream,
    issuer: TestIssuer,
) -> None:  # fmt: skip
    with GatewayProcess(
        gateway.gateway, untrusting_service.http_address, upstream.address
    ) as untrusted:
        client = generate_key("ES256")
        reached = len(upstream.received)
        headers = dpop_headers(client, issuer.token(client), "GET", "/orders")
        reply = send(untrusted.address, "/orders", headers)
        assert reply.status == 403, reply
        assert reply.json()["error"] == "untrusted_proxy"
        assert len(upstream.received) == reached
    assert not [line for line in untrusting_service.stderr_lines if '"event":"decision"' in line]
