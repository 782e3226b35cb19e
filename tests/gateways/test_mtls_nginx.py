"""Certificate-bound tokens (RFC 8705) end to end through a real NGINX (Debian's package):
client (HTTPS, any client certificate or none) -> NGINX running
``examples/nginx-mtls/nginx.conf`` (``ssl_verify_client optional_no_ca``,
``$ssl_client_escaped_cert`` in ``X-Client-Cert``) -> the verifier's forward-auth listener ->
an echo upstream, all on loopback.

Written ahead of the integration (issue 23, phase 2). Assumes the route key
``sender_constraint`` (``dpop`` | ``mtls`` | ``either`` | ``none``), the settings
``DPOP_HTTP_CLIENT_CERT_HEADER`` and ``DPOP_HTTP_CLIENT_CERT_FORMAT`` (``escaped-pem``), and the
reason codes ``client_certificate_missing`` / ``_mismatch``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest

from tests.support.envoy import EchoUpstream
from tests.support.gateways import assert_denied, decision_of, missing_gateway
from tests.support.http_requests import Reply
from tests.support.mtls import (
    CLIENT_CERT_HEADER,
    NGINX_MTLS,
    NginxMtlsProcess,
    bearer,
    certificate_bound_token,
    https_dpop_headers,
    send_tls,
)
from tests.support.mtls_pki import Identity, MtlsPki, make_mtls_pki
from tests.support.service import ServiceProcess, TestIssuer, running_service
from verifier.cli.mint import generate_key

ROUTES = [
    {"path_prefix": "/mtls", "sender_constraint": "mtls"},
    {"path_prefix": "/either", "sender_constraint": "either"},
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> MtlsPki:
    return make_mtls_pki(tmp_path_factory.mktemp("mtls-pki"))


@pytest.fixture(scope="module")
def mtls_service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[ServiceProcess]:
    env = {
        "DPOP_HTTP_LISTEN": "127.0.0.1:0",
        "DPOP_HTTP_CLIENT_CERT_HEADER": CLIENT_CERT_HEADER,
        "DPOP_HTTP_CLIENT_CERT_FORMAT": "escaped-pem",
    }
    with running_service(
        tmp_path_factory.mktemp("svc-mtls"), issuer, env=env, routes=ROUTES
    ) as svc:
        assert svc.http_address, "the service announced no forward-auth listener"
        yield svc


@pytest.fixture(scope="module")
def nginx(
    mtls_service: ServiceProcess, upstream: EchoUpstream, pki: MtlsPki
) -> Iterator[NginxMtlsProcess]:
    problem = missing_gateway(NGINX_MTLS)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with NginxMtlsProcess(pki, mtls_service.http_address, upstream.address) as proxy:
        yield proxy


def send(
    nginx: NginxMtlsProcess, pki: MtlsPki, client: Identity | None, path: str,
    headers: list[tuple[str, str]],
) -> Reply:  # fmt: skip
    return send_tls(nginx.address, path, headers, ca_file=pki.ca.cert_file, client=client)


def test_bound_token_with_its_certificate_reaches_the_upstream(
    nginx: NginxMtlsProcess, mtls_service: ServiceProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    for identity in (pki.client, pki.self_signed):  # optional_no_ca: any certificate
        token = certificate_bound_token(issuer, identity, subject="alice")
        reply = send(nginx, pki, identity, "/mtls/accounts", bearer(token))
        assert reply.status == 200, (reply, nginx.log())
        assert dict(reply.upstream_headers())["x-auth-subject"] == "alice"
        assert decision_of(reply.trace_id, mtls_service)["reason"] == "ok"


def test_wrong_certificate_no_certificate_and_unbound_token_are_refused(
    nginx: NginxMtlsProcess, mtls_service: ServiceProcess, upstream: EchoUpstream,
    issuer: TestIssuer, pki: MtlsPki,
) -> None:  # fmt: skip
    token = certificate_bound_token(issuer, pki.client)
    reached = len(upstream.received)
    cases = [
        (pki.other_client, bearer(token), "client_certificate_mismatch"),
        (None, bearer(token), "client_certificate_missing"),
        (pki.client, bearer(issuer.token(None)), None),  # unbound: some token reason
    ]
    for identity, headers, expected in cases:
        reply = send(nginx, pki, identity, "/mtls/accounts", headers)
        assert_denied(reply, 401, "invalid_token")
        if expected is not None:
            assert decision_of(reply.trace_id, mtls_service)["reason"] == expected
    assert len(upstream.received) == reached


def test_a_client_cannot_send_the_certificate_header_itself(
    nginx: NginxMtlsProcess, mtls_service: ServiceProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    token = certificate_bound_token(issuer, pki.client)
    forged = urllib.parse.quote(pki.client.pem, safe="")
    for identity in (None, pki.other_client):
        reply = send(nginx, pki, identity, "/mtls/accounts",
                     [*bearer(token), (CLIENT_CERT_HEADER, forged)])  # fmt: skip
        assert_denied(reply, 401, "invalid_token")


def test_token_bound_both_ways_needs_the_proof_and_the_certificate(
    nginx: NginxMtlsProcess, mtls_service: ServiceProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    key = generate_key("ES256")
    token = certificate_bound_token(issuer, pki.client, dpop_key=key)
    path = "/either/both"
    assert (
        send(nginx, pki, pki.client, path, https_dpop_headers(key, token, "GET", path)).status
        == 200
    )
    wrong_cert = send(
        nginx, pki, pki.other_client, path, https_dpop_headers(key, token, "GET", path)
    )
    assert_denied(wrong_cert, 401, "invalid_token")
    assert decision_of(wrong_cert.trace_id, mtls_service)["reason"] == "client_certificate_mismatch"
    no_proof = send(nginx, pki, pki.client, path, bearer(token))
    assert no_proof.status == 401, no_proof


def test_dpop_routes_work_without_a_client_certificate(
    nginx: NginxMtlsProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    key = generate_key("ES256")
    token = issuer.token(key)
    reply = send(nginx, pki, None, "/orders", https_dpop_headers(key, token, "GET", "/orders"))
    assert reply.status == 200, reply
