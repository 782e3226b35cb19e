"""Traefik's ForwardAuth middleware against the real verifier, as Traefik's documentation
specifies the exchange (Traefik itself cannot be installed on the test machines).

https://doc.traefik.io/traefik/middlewares/http/forwardauth/ (and the v3 reference,
https://doc.traefik.io/traefik/reference/routing-configuration/http/middlewares/forwardauth/):

* the middleware asks ``address`` (a ``GET``; Traefik's ``pkg/middlewares/auth/forward.go``)
  with the client's headers, hop-by-hop ones removed, and sets "Forward-Request Headers":
  ``X-Forwarded-Method``, ``-Proto``, ``-Host``, ``-Uri`` and ``-For``; with
  ``trustForwardHeader: false`` the client's own values of these are replaced;
* "If the service answers with a 2XX code, access is granted, and the original request is
  performed", with ``authResponseHeaders`` "copied from the authentication server response and
  set on forwarded request, replacing any existing conflicting headers";
* "Otherwise, the response from the authentication server is returned."

:class:`TraefikForwardAuth` is that exchange, configured from ``examples/traefik/dynamic.yml``
with only its placeholders filled, so the example is what is tested.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import subprocess
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateways.conftest import DOWN_ISSUER
from tests.support.gateways import (
    EXAMPLES,
    HOST,
    ROOT,
    Reply,
    assert_denied,
    decision_of,
    dpop_headers,
    render_example,
)
from tests.support.service import AUDIENCE, ServiceProcess, TestIssuer
from verifier.cli.mint import generate_key, make_access_token

DYNAMIC = EXAMPLES / "traefik" / "dynamic.yml"
README = EXAMPLES / "traefik" / "README.md"
IDENTITY = ("x-dpop-jkt", "x-auth-subject", "x-auth-client-id", "x-auth-scope", "x-auth-issuer",
            "x-dpop-report-only")  # fmt: skip
# Removed from the copy of the client's headers (Traefik: forward.go, hopHeaders).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailers", "transfer-encoding",
                        "upgrade"})  # fmt: skip
CLIENT_IP = "203.0.113.7"


@dataclass
class ClientRequest:
    """The request Traefik received from a client (plain HTTP)."""

    method: str
    request_uri: str
    headers: Sequence[tuple[str, str]] = ()
    host: str = HOST


@dataclass
class Outcome:
    """What Traefik does with the verifier's answer: forward the request upstream with these
    headers (``upstream_headers``), or return ``response`` to the client."""

    upstream_headers: list[tuple[str, str]] | None
    response: Reply | None
    verifier_answer: Reply


@dataclass
class TraefikForwardAuth:
    """The ForwardAuth exchange of one configured middleware (see the module docstring)."""

    address: str
    auth_response_headers: list[str]
    trust_forward_header: bool

    @classmethod
    def from_example(cls, service: ServiceProcess) -> TraefikForwardAuth:
        host, _, port = service.http_address.rpartition(":")
        text = render_example(DYNAMIC, {"VERIFIER_HOST": host, "VERIFIER_PORT": port,
                                        "APP_HOST": "127.0.0.1", "APP_PORT": "9"})  # fmt: skip
        config = yaml.safe_load(text)["http"]["middlewares"]["dpop"]["forwardAuth"]
        return cls(
            config["address"], list(config["authResponseHeaders"]), config["trustForwardHeader"]
        )

    def auth_request_headers(self, request: ClientRequest) -> list[tuple[str, str]]:
        """The headers of the ``GET`` to the verifier (Traefik's ``writeHeader``)."""
        assert not self.trust_forward_header, "the contract is written for the example's false"
        forwarded = {
            "x-forwarded-for": CLIENT_IP,
            "x-forwarded-method": request.method,
            "x-forwarded-proto": "http",
            "x-forwarded-host": request.host,
            "x-forwarded-uri": request.request_uri,
        }
        copied = [(k, v) for k, v in request.headers
                  if k.lower() not in HOP_BY_HOP and k.lower() not in forwarded]  # fmt: skip
        # Go's client adds these when absent.
        names = {k.lower() for k, _ in copied}
        defaults = [("user-agent", "Go-http-client/1.1"), ("accept-encoding", "gzip")]
        return [*copied, *forwarded.items(), *[(k, v) for k, v in defaults if k not in names]]

    def handle(self, request: ClientRequest) -> Outcome:
        answer = self._ask(self.auth_request_headers(request))
        if 200 <= answer.status < 300:
            upstream = list(request.headers)
            for name in self.auth_response_headers:
                upstream = [(k, v) for k, v in upstream if k.lower() != name.lower()]
                upstream += [(name, v) for k, v in answer.headers if k.lower() == name.lower()]
            return Outcome(upstream, None, answer)
        returned = [(k, v) for k, v in answer.headers if k.lower() not in HOP_BY_HOP]
        return Outcome(None, Reply(answer.status, returned, answer.body, ""), answer)

    def _ask(self, headers: list[tuple[str, str]]) -> Reply:
        url = urllib.parse.urlsplit(self.address)
        assert url.hostname and url.port, self.address
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        try:
            connection.putrequest("GET", url.path or "/", skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            return Reply(response.status, response.getheaders(), response.read(), "")
        finally:
            connection.close()


def traced(headers: Sequence[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """``headers`` plus a client's ``traceparent`` (Traefik copies it), and its trace id."""
    trace_id = secrets.token_hex(16)
    return trace_id, [*headers, ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")]


@pytest.fixture(scope="module")
def traefik(service: ServiceProcess) -> TraefikForwardAuth:
    return TraefikForwardAuth.from_example(service)


def _identity(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in headers if k.lower() in IDENTITY)


def test_the_example_configures_every_identity_header_and_no_forward_trust() -> None:
    config = yaml.safe_load(render_example(DYNAMIC, {"VERIFIER_HOST": "verifier",
                                                     "VERIFIER_PORT": "8081", "APP_HOST": "app",
                                                     "APP_PORT": "80"}))["http"]  # fmt: skip
    middleware = config["middlewares"]["dpop"]["forwardAuth"]
    assert middleware["address"] == "http://verifier:8081/"
    assert middleware["trustForwardHeader"] is False
    assert sorted(h.lower() for h in middleware["authResponseHeaders"]) == sorted(IDENTITY)
    assert set(middleware) == {"address", "trustForwardHeader", "authResponseHeaders"}
    assert config["routers"]["api"]["middlewares"] == ["dpop"]
    assert config["services"]["app"]["loadBalancer"]["servers"] == [{"url": "http://app:80"}]
    # The README's Kubernetes Middleware says the same, but for its in-cluster address.
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
                if "kind: Middleware" in b]  # fmt: skip
    crd = yaml.safe_load(block)["spec"]["forwardAuth"]
    assert {**crd, "address": middleware["address"]} == middleware


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_an_allowed_request_reaches_the_upstream_with_only_the_verifiers_identity(
    traefik: TraefikForwardAuth, service: ServiceProcess, issuer: TestIssuer, alg: str
) -> None:
    client = generate_key(alg)
    token = issuer.token(client, subject="alice", client_id="app-1", scope="read")
    spoofed = [(name, "spoofed") for name in IDENTITY]
    trace_id, headers = traced([*dpop_headers(client, token, "PUT", "/orders/7"), *spoofed])
    outcome = traefik.handle(ClientRequest("PUT", "/orders/7?x=%2F", headers))
    assert outcome.upstream_headers is not None, outcome.verifier_answer
    assert _identity(outcome.upstream_headers) == sorted(
        [("x-dpop-jkt", client.jkt), ("x-auth-subject", "alice"), ("x-auth-client-id", "app-1"),
         ("x-auth-scope", "read"), ("x-auth-issuer", "https://issuer.test")]
    )  # fmt: skip
    logged = decision_of(trace_id, service)
    assert (logged["reason"], logged["method"], logged["alg"]) == ("ok", "PUT", alg)


def test_a_route_with_verification_off_passes_no_identity(
    traefik: TraefikForwardAuth, service: ServiceProcess
) -> None:
    trace_id, headers = traced([(name, "spoofed") for name in IDENTITY])
    outcome = traefik.handle(ClientRequest("GET", "/public/logo.png", headers))
    assert outcome.upstream_headers is not None, outcome.verifier_answer
    assert _identity(outcome.upstream_headers) == []
    assert decision_of(trace_id, service)["route"] == "*/public"


def test_a_client_cannot_choose_the_request_that_is_decided(
    traefik: TraefikForwardAuth, service: ServiceProcess
) -> None:
    # Traefik overwrites X-Forwarded-* and copies every other client header: a client's
    # X-Forwarded-* never arrive, and its X-Original-* naming another request make the request
    # ambiguous, so it is refused, never decided on the client's word.
    forged = [("x-forwarded-uri", "/public/x"), ("x-forwarded-host", "elsewhere.test")]
    trace_id, headers = traced(forged)
    outcome = traefik.handle(ClientRequest("GET", "/orders", headers))
    assert outcome.response is not None and outcome.response.status == 401
    logged = decision_of(trace_id, service)
    assert (logged["reason"], logged["route"], logged["method"]) == (
        "authorization_missing", "default", "GET",
    )  # fmt: skip
    trace_id, headers = traced([("x-original-uri", "/public/x"), ("x-original-method", "GET")])
    outcome = traefik.handle(ClientRequest("GET", "/orders", headers))
    assert outcome.response is not None and outcome.response.status == 400
    assert decision_of(trace_id, service)["reason"] == "request_invalid"


def _denied(traefik: TraefikForwardAuth, request: ClientRequest) -> Reply:
    outcome = traefik.handle(request)
    assert outcome.response is not None, "allowed"
    # "the response from the authentication server is returned": all of it.
    assert outcome.response.body == outcome.verifier_answer.body
    return outcome.response


def test_a_replayed_proof_is_returned_to_the_client_as_a_401(
    traefik: TraefikForwardAuth, service: ServiceProcess, issuer: TestIssuer
) -> None:
    client = generate_key("ES256")
    headers = dpop_headers(client, issuer.token(client), "POST", "/orders")
    assert traefik.handle(ClientRequest("POST", "/orders", headers)).upstream_headers
    trace_id, headers = traced(headers)
    reply = _denied(traefik, ClientRequest("POST", "/orders", headers))
    assert_denied(reply, 401, "invalid_dpop_proof")
    assert decision_of(trace_id, service)["reason"] == "replayed"


def test_a_nonce_challenge_reaches_the_client_and_the_retry_passes(
    traefik: TraefikForwardAuth, issuer: TestIssuer
) -> None:
    client = generate_key("ES256")
    token = issuer.token(client)
    first = _denied(
        traefik, ClientRequest("GET", "/nonce/a", dpop_headers(client, token, "GET", "/nonce/a"))
    )
    assert_denied(first, 401, "use_dpop_nonce")
    nonce = first.header("dpop-nonce")
    assert nonce
    retry = traefik.handle(
        ClientRequest("GET", "/nonce/a", dpop_headers(client, token, "GET", "/nonce/a",
                                                      nonce=nonce))
    )  # fmt: skip
    assert retry.upstream_headers is not None, retry.verifier_answer
    assert ("X-Dpop-Jkt", client.jkt) in retry.upstream_headers


@pytest.mark.parametrize(
    ("make_headers", "status", "reason"),
    [
        pytest.param(lambda c, t, d: [(k, v) for k, v in dpop_headers(c, t, "GET", "/orders")
                                      if k != "dpop"], 401, "proof_missing", id="missing-proof"),
        pytest.param(lambda c, t, d: [("authorization", f"Bearer {t}")], 401,
                     "token_bound_sent_as_bearer", id="bearer-downgrade"),
        pytest.param(lambda c, t, d: [("authorization", f"DPoP {t}, DPoP {t}")], 400,
                     "authorization_multiple", id="400"),
        pytest.param(lambda c, t, d: dpop_headers(c, d, "GET", "/orders"), 503,
                     "key_source_unavailable", id="503"),
    ],
)  # fmt: skip
def test_other_denials_reach_the_client_with_their_status(
    traefik: TraefikForwardAuth, service: ServiceProcess, issuer: TestIssuer,
    make_headers: Any, status: int, reason: str,
) -> None:  # fmt: skip
    client = generate_key("ES256")
    down = make_access_token(generate_key("ES256"), issuer=DOWN_ISSUER, jkt=client.jkt,
                             audience=AUDIENCE)  # fmt: skip
    trace_id, headers = traced(make_headers(client, issuer.token(client), down))
    reply = _denied(traefik, ClientRequest("GET", "/orders", headers))
    assert reply.status == status
    assert reply.header("cache-control") == "no-store"
    assert decision_of(trace_id, service)["reason"] == reason
    if status == 503:
        assert reply.header("www-authenticate") == ""
        assert reply.json()["error"] == "temporarily_unavailable"
    else:
        assert reply.header("www-authenticate").startswith('DPoP error="')


def test_the_example_files_fill_in_completely(tmp_path: Path) -> None:
    values = {"LISTEN_PORT": "8080", "PREFIX": str(tmp_path)}
    static = yaml.safe_load(render_example(EXAMPLES / "traefik" / "traefik.yml", values))
    assert static["entryPoints"]["web"]["address"] == "127.0.0.1:8080"
    assert static["providers"]["file"]["filename"] == f"{tmp_path}/dynamic.yml"


def test_the_readme_commands_fill_in_both_files(tmp_path: Path) -> None:
    """The README's shell block, run as it is up to Traefik itself (not installable here):
    a stand-in ``traefik`` on ``PATH`` records its arguments."""
    if shutil.which("envsubst") is None:
        pytest.fail("envsubst is not installed: run `make install-gateways`", pytrace=False)
    (block,) = re.findall(r"<!-- runnable -->\n```sh\n(.*?)```", README.read_text("utf-8"), re.S)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "traefik").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n')
    (bin_dir / "traefik").chmod(0o755)
    values = {"LISTEN_PORT": "8080", "APP_HOST": "app.internal", "APP_PORT": "9000",
              "VERIFIER_HOST": "verifier.internal", "VERIFIER_PORT": "8081",
              "PREFIX": str(tmp_path / "run")}  # fmt: skip
    env = {**os.environ, **values, "ARGS_FILE": str(tmp_path / "args"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    subprocess.run(["bash", "-euc", block], cwd=ROOT, env=env, check=True, timeout=30)
    assert (tmp_path / "args").read_text().split() == [f"--configFile={tmp_path}/run/traefik.yml"]
    for name in ("traefik.yml", "dynamic.yml"):
        filled = (tmp_path / "run" / name).read_text("utf-8")
        used = {
            k: v
            for k, v in values.items()
            if "${" + k + "}" in (EXAMPLES / "traefik" / name).read_text()
        }
        assert filled == render_example(EXAMPLES / "traefik" / name, used), name
