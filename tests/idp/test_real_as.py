"""A real authorization server and a real client library, through a real Envoy (issue 19).

Tokens come from panva's ``oidc-provider`` 9 (npm); the ``Authorization`` and ``DPoP`` headers
the protected API receives are built by panva's ``openid-client`` 6 (``fetchProtectedResource``
with a DPoP handle), never by this project's code. The request path is the repository's
``examples/envoy/envoy.yaml`` Envoy (ext_authz gRPC) -> ``dpop-verifier serve`` -> an echo
upstream; the verifier discovers the AS (``preset = "node-oidc-provider"``), verifies its JWTs
locally and introspects its opaque tokens. Each denial is asserted on the status the client
sees and on the reason in the service's decision log.
"""

from __future__ import annotations

import http.client
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envoy import EchoUpstream, EnvoyProcess, render_envoy_config
from tests.support.idp import BILLING, ORDERS, OTHER, IdpHarness, jwt_parts
from tests.support.service import ServiceProcess

NONCE_SECRET = "r" * 48
ROUTES = [
    {"path_prefix": "/nonce", "nonce_required": True},
    {"path_prefix": "/legacy", "mode": "allow-bearer"},
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, idp: IdpHarness) -> Iterator[ServiceProcess]:
    config = {
        "issuers": [
            {
                "issuer": idp.issuer,
                "preset": "node-oidc-provider",
                # Two resources behind one verifier: JWTs for orders, opaque tokens for billing.
                "audience": [ORDERS, BILLING],
                "introspection_client_id": idp.verifier_client_id,
                "introspection_secret_env": "IDP_INTROSPECTION_SECRET",
                "opaque_tokens": True,
                # No scheduled refresh while the module runs: every JWKS fetch is on purpose.
                "jwks_refresh_seconds": 3600,
            }
        ],
        "routes": ROUTES,
    }
    config_file = tmp_path_factory.mktemp("idp-service") / "config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    env = {"IDP_INTROSPECTION_SECRET": idp.verifier_secret, "DPOP_NONCE_SECRET": NONCE_SECRET}
    service = ServiceProcess(config_file, env)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[EchoUpstream]:
    echo = EchoUpstream()
    yield echo
    echo.close()


@pytest.fixture(scope="module")
def envoy(service: ServiceProcess, upstream: EchoUpstream) -> Iterator[EnvoyProcess]:
    host, port = service.address.rsplit(":", 1)
    with EnvoyProcess(render_envoy_config([(host, int(port))], upstream.address)) as proxy:
        yield proxy


def url(envoy: EnvoyProcess, path: str) -> str:
    return f"http://127.0.0.1:{envoy.port}{path}"


def traceparent() -> tuple[str, list[list[str]]]:
    """A fresh trace id and the header carrying it: the service logs it with its decision."""
    trace_id = secrets.token_hex(16)
    return trace_id, [["traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"]]


def decisions_of(service: ServiceProcess, trace_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The Check decisions the service logged for ``trace_id`` (waits for ``count`` of them)."""
    deadline = time.monotonic() + 10
    while True:
        found = []
        for line in list(service.stderr_lines):
            if line.startswith("{") and '"event":"decision"' in line:
                entry = json.loads(line)
                if entry.get("rpc") == "Check" and entry.get("trace_id") == trace_id:
                    found.append(entry)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def reasons(service: ServiceProcess) -> list[str]:
    return [
        json.loads(line)["reason"]
        for line in list(service.stderr_lines)
        if line.startswith("{") and '"event":"decision"' in line
    ]


def call(
    idp: IdpHarness,
    service: ServiceProcess,
    target: str,
    token: str,
    key: str | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The library calls ``target`` with ``token`` (DPoP with ``key``; None: Bearer); returns
    its answer and the service's decisions for it."""
    trace_id, headers = traceparent()
    answer = idp.call("call", url=target, token=token, key=key, headers=headers)
    return answer, decisions_of(service, trace_id, len(answer["exchanges"]))


def header(headers: list[list[str]], name: str) -> str:
    values = [v for k, v in headers if k.lower() == name]
    assert len(values) <= 1, (name, values)
    return values[0] if values else ""


def echoed(answer: dict[str, Any]) -> dict[str, str]:
    """The headers the upstream received (it echoes them)."""
    return {k: v for k, v in json.loads(answer["body"])["headers"]}


def token(idp: IdpHarness, resource: str, key: str | None) -> str:
    access_token: str = idp.call("token", resource=resource, key=key)["access_token"]
    return access_token


@pytest.fixture(scope="module")
def client_key(idp: IdpHarness) -> str:
    idp.call("key", name="app-key")
    return "app-key"


# --- JWT and opaque tokens ---------------------------------------------------------------------


def test_a_jwt_access_token_and_the_librarys_proof_are_accepted(
    idp: IdpHarness, service: ServiceProcess, envoy: EnvoyProcess, client_key: str
) -> None:
    access_token = token(idp, ORDERS, client_key)
    jose_header, claims = jwt_parts(access_token)
    assert jose_header["typ"] == "at+jwt" and claims["aud"] == ORDERS  # the RFC 9068 profile
    answer, decisions = call(idp, service, url(envoy, "/orders/1"), access_token, client_key)
    assert answer.get("status") == 200, answer
    (exchange,) = answer["exchanges"]
    sent = exchange["request"]["headers"]
    assert header(sent, "authorization") == f"DPoP {access_token}"
    assert jwt_parts(header(sent, "dpop"))[0]["typ"] == "dpop+jwt"  # built by the library
    upstream = echoed(answer)
    assert upstream["x-dpop-jkt"] == claims["cnf"]["jkt"]
    assert upstream["x-auth-issuer"] == idp.issuer
    assert upstream["x-auth-client-id"] == "app"
    assert upstream["x-auth-subject"] == "app"  # oidc-provider: sub = client id in its JWTs
    assert [d["reason"] for d in decisions] == ["ok"]


def test_an_opaque_access_token_is_introspected(
    idp: IdpHarness, service: ServiceProcess, envoy: EnvoyProcess, client_key: str
) -> None:
    access_token = token(idp, BILLING, client_key)
    assert access_token.count(".") == 0  # opaque
    introspections = idp.count("POST", "/token/introspection")
    answer, decisions = call(idp, service, url(envoy, "/billing/7"), access_token, client_key)
    assert answer.get("status") == 200, answer
    assert [d["reason"] for d in decisions] == ["ok"]
    assert idp.count("POST", "/token/introspection") == introspections + 1
    upstream = echoed(answer)
    assert upstream["x-auth-client-id"] == "app"  # the answer's client_id
    assert upstream["x-auth-issuer"] == idp.issuer
    assert upstream["x-dpop-jkt"]
    # A client-credentials introspection answer has no sub: no subject header (documented in
    # docs/token-sources.md, "Identity headers per token format").
    assert "x-auth-subject" not in upstream


# --- replay and downgrade ----------------------------------------------------------------------


def send_again(envoy: EnvoyProcess, request: dict[str, Any]) -> tuple[int, str, str]:
    """Send a request the library made once more, byte for byte the same credentials."""
    trace_id, _ = traceparent()
    target = request["url"].split(str(envoy.port), 1)[1]
    connection = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    try:
        connection.putrequest(request["method"], target, skip_accept_encoding=True)
        for name in ("authorization", "dpop"):
            connection.putheader(name, header(request["headers"], name))
        connection.putheader("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("www-authenticate") or "", trace_id
    finally:
        connection.close()


def test_a_replayed_proof_is_refused(
    idp: IdpHarness, service: ServiceProcess, envoy: EnvoyProcess, client_key: str
) -> None:
    access_token = token(idp, ORDERS, client_key)
    answer, _ = call(idp, service, url(envoy, "/orders/replay"), access_token, client_key)
    assert answer.get("status") == 200, answer
    status, challenge, trace_id = send_again(envoy, answer["exchanges"][0]["request"])
    assert status == 401
    assert challenge.startswith('DPoP error="invalid_dpop_proof"'), challenge
    assert [d["reason"] for d in decisions_of(service, trace_id)] == ["replayed"]


def test_a_bound_token_sent_as_bearer_is_refused(
    idp: IdpHarness, service: ServiceProcess, envoy: EnvoyProcess, client_key: str
) -> None:
    access_token = token(idp, ORDERS, client_key)
    for path in ("/orders/downgrade", "/legacy/downgrade"):  # even where Bearer is allowed
        answer, decisions = call(idp, service, url(envoy, path), access_token, None)
        (exchange,) = answer["exchanges"]
        assert header(exchange["request"]["headers"], "authorization") == f"Bearer {access_token}"
        assert exchange["response"]["status"] == 401
        assert [d["reason"] for d in decisions] == ["token_bound_sent_as_bearer"]


def test_an_unbound_bearer_token_passes_only_where_bearer_is_allowed(
    idp: IdpHarness, service: ServiceProcess, envoy: EnvoyProcess
) -> None:
    bearer = token(idp, ORDERS, None)
    assert "cnf" not in jwt_parts(bearer)[1]
    answer, decisions = call(idp, service, url(envoy, "/legacy/report"), bearer, None)
    assert answer.get("status") == 200 and [d["reason"] for d in decisions] == ["ok"]
    answer, decisions = call(idp, service, url(envoy, "/orders/1"), bearer, None)
    assert answer["exchanges"][0]["response"]["status"] == 401
    assert [d["reason"] for d in decisions] == ["bearer_not_allowed"]


# --- the nonce challenge, answered by the library ----------------------------------------------


def test_the_library_answers_the_nonce_challenge_by_itself(
    idp: IdpHarness, service: ServiceProcess, envoy: EnvoyProcess
) -> None:
    idp.call("key", name="nonce-key")  # a fresh key: no nonce cached by the library yet
    access_token = token(idp, ORDERS, "nonce-key")
    answer, decisions = call(idp, service, url(envoy, "/nonce/1"), access_token, "nonce-key")
    assert answer.get("status") == 200, answer
    challenge, retry = answer["exchanges"]  # one call of the library, two HTTP exchanges
    assert challenge["response"]["status"] == 401
    www = header(challenge["response"]["headers"], "www-authenticate")
    assert www.startswith('DPoP error="use_dpop_nonce"'), www
    nonce = header(challenge["response"]["headers"], "dpop-nonce")
    assert nonce
    first_proof = jwt_parts(header(challenge["request"]["headers"], "dpop"))[1]
    retried_proof = jwt_parts(header(retry["request"]["headers"], "dpop"))[1]
    assert "nonce" not in first_proof and retried_proof["nonce"] == nonce
    assert retry["response"]["status"] == 200
    assert [d["reason"] for d in decisions] == ["nonce_required", "ok"]


# --- two resources, two audiences ----------------------------------------------------------------


def test_two_resources_with_different_audiences(
    idp: IdpHarness, service: ServiceProcess, envoy: EnvoyProcess, client_key: str
) -> None:
    orders, billing = token(idp, ORDERS, client_key), token(idp, BILLING, client_key)
    for path, access_token in (("/orders/a", orders), ("/billing/a", billing)):
        answer, decisions = call(idp, service, url(envoy, path), access_token, client_key)
        assert answer.get("status") == 200, (path, answer)
        assert [d["reason"] for d in decisions] == ["ok"]
    other = token(idp, OTHER, client_key)  # a resource this verifier does not serve
    assert jwt_parts(other)[1]["aud"] == OTHER
    answer, decisions = call(idp, service, url(envoy, "/orders/a"), other, client_key)
    assert answer["exchanges"][0]["response"]["status"] == 401
    assert [d["reason"] for d in decisions] == ["token_audience_invalid"]
    # The audiences belong to the issuer, not to a route: a token for either resource passes
    # at both (docs/token-sources.md says so and how to separate them).
    answer, decisions = call(idp, service, url(envoy, "/billing/a"), orders, client_key)
    assert [d["reason"] for d in decisions] == ["ok"]


# --- key rotation while the verifier runs ------------------------------------------------------


def test_a_token_from_a_brand_new_key_is_accepted_at_once_with_one_refetch(
    idp: IdpHarness, service: ServiceProcess, envoy: EnvoyProcess, client_key: str
) -> None:
    before = token(idp, ORDERS, client_key)
    answer, _ = call(idp, service, url(envoy, "/orders/before"), before, client_key)
    assert answer.get("status") == 200, answer
    fetches = idp.count("GET", "/jwks")
    kids = idp.call("rotate")["kids"]  # the new key first: the AS signs with it from now on
    rotated = token(idp, ORDERS, client_key)
    assert jwt_parts(rotated)[0]["kid"] == kids[0] != jwt_parts(before)[0]["kid"]
    for path in ("/orders/rotated", "/orders/rotated-again", "/billing/rotated"):
        answer, decisions = call(idp, service, url(envoy, path), rotated, client_key)
        assert answer.get("status") == 200, (path, answer)
        assert [d["reason"] for d in decisions] == ["ok"]
    assert idp.count("GET", "/jwks") == fetches + 1  # exactly one refetch, on the first use
    # Tokens signed by the previous key (still published) keep working without a fetch.
    answer, _ = call(idp, service, url(envoy, "/orders/old-key"), before, client_key)
    assert answer.get("status") == 200
    assert idp.count("GET", "/jwks") == fetches + 1
    assert "token_key_unknown" not in reasons(service)


# --- dpop-verifier issuer check ----------------------------------------------------------------


def test_issuer_check_reports_what_the_real_as_publishes(idp: IdpHarness) -> None:
    idp.call("key", name="check-key")
    sample = token(idp, ORDERS, "check-key")
    run = subprocess.run(
        [
            sys.executable, "-m", "verifier", "issuer", "check", idp.issuer,
            "--preset", "node-oidc-provider", "--audience", ORDERS, "--token", "-", "--json",
        ],
        input=sample, capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sample not in run.stdout  # the token is never printed
    report = json.loads(run.stdout)
    assert report["problems"] == []
    assert report["jwks_uri"] == f"{idp.issuer}/jwks"
    assert report["introspection_endpoint"] == f"{idp.issuer}/token/introspection"
    assert "ES256" in report["dpop_signing_alg_values_supported"]
    assert {key["kid"] for key in report["keys"]} >= {jwt_parts(sample)[0]["kid"]}
    assert all(key["verifies"] == ["ES256"] for key in report["keys"])
    assert report["accepts"]["typ"] == ["at+jwt"] and report["accepts"]["iat_required"]
    assert report["token"]["decision"] == "accepted"
    assert report["token"]["claims"]["client_id"] == "app"

    wrong = subprocess.run(
        [sys.executable, "-m", "verifier", "issuer", "check", idp.issuer, "--audience", BILLING,
         "--jwt-typ", "JWT", "--token", "-"],
        input=sample, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "DENIED    token_malformed" in wrong.stdout  # typ at+jwt is not "JWT"
