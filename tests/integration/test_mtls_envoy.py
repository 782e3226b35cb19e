"""Certificate-bound tokens (RFC 8705) end to end through a real Envoy: client (HTTPS, with or
without a client certificate) -> Envoy -> ext_authz -> the verifier service -> an echo
upstream, all on loopback, Envoy running ``examples/envoy-mtls/envoy.yaml`` (the client's
certificate in ``source.certificate``) or ``envoy-xfcc.yaml`` (a front proxy's XFCC), with only
their placeholders filled.

These tests are written ahead of the integration (issue 23, phase 2). They assume:
route keys ``sender_constraint`` (``dpop`` | ``mtls`` | ``either`` | ``none``, default
``dpop``), ``profile = "fapi2"`` and ``issuers``; settings ``DPOP_EXTAUTHZ_CLIENT_CERT``
(``peer`` default | ``xfcc`` | ``none``) and ``DPOP_XFCC_TRUSTED_BY``; reason codes
``client_certificate_missing`` / ``_invalid`` / ``_mismatch`` / ``_untrusted``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.envoy import EchoUpstream, EnvoyProcess
from tests.support.http_requests import Reply, assert_denied, logged_decision
from tests.support.http_requests import send as send_plain
from tests.support.mtls import (
    ENVOY_MTLS,
    ENVOY_XFCC,
    bearer,
    certificate_bound_token,
    envoy_values,
    https_dpop_headers,
    send_tls,
    start_envoy,
)
from tests.support.mtls_pki import PROXY_URI, Identity, MtlsPki, make_mtls_pki
from tests.support.net import free_port
from tests.support.service import ISSUER, ServiceProcess, TestIssuer, running_service
from verifier.cli.mint import generate_key, make_proof

ROUTES = [
    {"path_prefix": "/mtls", "sender_constraint": "mtls"},
    {"path_prefix": "/either", "sender_constraint": "either"},
    {"path_prefix": "/fapi", "sender_constraint": "either", "profile": "fapi2",
     "issuers": [ISSUER]},
]  # fmt: skip
"""Everything else is the default, ``sender_constraint = "dpop"``."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> MtlsPki:
    return make_mtls_pki(tmp_path_factory.mktemp("mtls-pki"))


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
    """The verifier reading the peer certificate (``DPOP_EXTAUTHZ_CLIENT_CERT=peer``)."""
    with running_service(
        tmp_path_factory.mktemp("svc"), issuer,
        env={"DPOP_EXTAUTHZ_CLIENT_CERT": "peer"}, routes=ROUTES,
    ) as svc:  # fmt: skip
        yield svc


@pytest.fixture(scope="module")
def envoy(service: ServiceProcess, upstream: EchoUpstream, pki: MtlsPki) -> Iterator[EnvoyProcess]:
    with start_envoy(ENVOY_MTLS, envoy_values(pki, service.address, upstream.address)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def xfcc_service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[ServiceProcess]:
    """The verifier reading XFCC, trusting only the front proxy's ``By=``."""
    env = {"DPOP_EXTAUTHZ_CLIENT_CERT": "xfcc", "DPOP_XFCC_TRUSTED_BY": PROXY_URI}
    with running_service(
        tmp_path_factory.mktemp("svc-xfcc"), issuer, env=env, routes=ROUTES
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def xfcc_envoy(
    xfcc_service: ServiceProcess, upstream: EchoUpstream, pki: MtlsPki
) -> Iterator[tuple[EnvoyProcess, int]]:
    """The front/inner pair, and the inner proxy's port."""
    inner = free_port()
    values = envoy_values(pki, xfcc_service.address, upstream.address, INNER_PORT=str(inner))
    with start_envoy(ENVOY_XFCC, values) as proxy:
        yield proxy, inner


def send(
    proxy: EnvoyProcess, pki: MtlsPki, client: Identity | None, path: str,
    headers: list[tuple[str, str]], *, method: str = "GET",
) -> Reply:  # fmt: skip
    return send_tls(("127.0.0.1", proxy.port), path, headers, ca_file=pki.ca.cert_file,
                    client=client, method=method)  # fmt: skip


def reason(reply: Reply, service: ServiceProcess) -> str:
    decision: dict[str, Any] = logged_decision(reply.trace_id, "Check", service)
    return str(decision["reason"])


# --- The client certificate from the TLS handshake (source.certificate) ----------------------


def test_bound_token_with_its_certificate_reaches_the_upstream(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    for identity in (pki.client, with_chain(pki.chained_client, pki.intermediate)):
        token = certificate_bound_token(issuer, identity, subject="alice")
        reply = send(envoy, pki, identity, "/mtls/accounts", bearer(token))
        assert reply.status == 200, reply
        assert dict(reply.upstream_headers())["x-auth-subject"] == "alice"
        assert reason(reply, service) == "ok"


def test_bound_token_with_another_certificate_is_refused(
    envoy: EnvoyProcess, service: ServiceProcess, upstream: EchoUpstream, issuer: TestIssuer,
    pki: MtlsPki,
) -> None:  # fmt: skip
    token = certificate_bound_token(issuer, pki.client)
    reached = len(upstream.received)
    reply = send(envoy, pki, pki.other_client, "/mtls/accounts", bearer(token))
    assert_denied(reply, 401, "invalid_token")
    assert reason(reply, service) == "client_certificate_mismatch"
    assert len(upstream.received) == reached


def test_the_listener_refuses_a_client_without_a_ca_issued_certificate(
    envoy: EnvoyProcess, pki: MtlsPki
) -> None:
    # require_client_certificate with trusted_ca: the handshake fails before any request (the
    # no-certificate denial itself is asserted through XFCC and NGINX, whose listeners accept
    # any certificate or none).
    for identity in (None, pki.self_signed):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            send(envoy, pki, identity, "/mtls/accounts", [])


def test_unbound_token_on_an_mtls_route_is_refused(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    unbound = issuer.token(None)
    reply = send(envoy, pki, pki.client, "/mtls/accounts", bearer(unbound))
    assert_denied(reply, 401, "invalid_token")
    # A DPoP-bound token is not certificate-bound either, even with a valid proof.
    key = generate_key("ES256")
    dpop_bound = issuer.token(key)
    reply = send(envoy, pki, pki.client, "/mtls/accounts",
                 https_dpop_headers(key, dpop_bound, "GET", "/mtls/accounts"))  # fmt: skip
    assert_denied(reply, 401, "invalid_token")


def test_dpop_routes_work_as_before_on_the_mtls_listener(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    key = generate_key("ES256")
    token = issuer.token(key)
    reply = send(
        envoy, pki, pki.client, "/orders", https_dpop_headers(key, token, "GET", "/orders")
    )
    assert reply.status == 200, reply
    # A certificate-bound token is not accepted where the route wants DPoP.
    bound = certificate_bound_token(issuer, pki.client)
    assert_denied(send(envoy, pki, pki.client, "/orders", bearer(bound)), 401, "invalid_token")


def test_either_route_takes_each_mechanism(
    envoy: EnvoyProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    key = generate_key("ES256")
    token = issuer.token(key)
    dpop = send(
        envoy, pki, pki.client, "/either/x", https_dpop_headers(key, token, "GET", "/either/x")
    )
    assert dpop.status == 200, dpop
    bound = certificate_bound_token(issuer, pki.client)
    assert send(envoy, pki, pki.client, "/either/x", bearer(bound)).status == 200
    assert_denied(send(envoy, pki, pki.client, "/either/x", bearer(issuer.token(None))),
                  401, "invalid_token")  # fmt: skip


def test_token_bound_both_ways_needs_the_proof_and_the_certificate(
    envoy: EnvoyProcess, service: ServiceProcess, issuer: TestIssuer, pki: MtlsPki
) -> None:
    key = generate_key("ES256")
    token = certificate_bound_token(issuer, pki.client, dpop_key=key)
    for path in ("/either/both", "/mtls/both", "/orders/both"):
        good = send(envoy, pki, pki.client, path, https_dpop_headers(key, token, "GET", path))
        assert good.status == 200, (path, good)
        wrong_cert = send(envoy, pki, pki.other_client, path,
                          https_dpop_headers(key, token, "GET", path))  # fmt: skip
        assert_denied(wrong_cert, 401, "invalid_token")
        assert reason(wrong_cert, service) == "client_certificate_mismatch"
        no_proof = send(envoy, pki, pki.client, path, bearer(token))
        assert no_proof.status == 401, (path, no_proof)
        other_key = generate_key("ES256")
        wrong_proof = send(envoy, pki, pki.client, path,
                           https_dpop_headers(other_key, token, "GET", path))  # fmt: skip
        assert_denied(wrong_proof, 401, "invalid_token")  # jkt_mismatch: RFC 9449 §7.1
        assert reason(wrong_proof, service) == "jkt_mismatch"


# --- The FAPI 2.0 profile on a route -------------------------------------------------------------


def test_fapi_route_rules(envoy: EnvoyProcess, issuer: TestIssuer, pki: MtlsPki) -> None:
    path = "/fapi/accounts"
    ok_key = generate_key("ES256")
    ok = send(envoy, pki, pki.client, path,
              [*https_dpop_headers(ok_key, issuer.token(ok_key), "GET", path),
               ("x-fapi-interaction-id", "c770aef3-6784-41f7-8e0e-ff5f97bddb3a")])  # fmt: skip
    assert ok.status == 200, ok
    assert ok.header("x-fapi-interaction-id") == "c770aef3-6784-41f7-8e0e-ff5f97bddb3a"
    generated = send(envoy, pki, pki.client, path,
                     https_dpop_headers(ok_key, issuer.token(ok_key), "GET", path))  # fmt: skip
    assert len(generated.header("x-fapi-interaction-id")) == 36  # an RFC 4122 UUID

    # Proof algorithms: PS256, ES256, EdDSA only (FAPI 2.0 §5.4.1).
    rs_key = generate_key("RS256")
    refused = send(envoy, pki, pki.client, path,
                   https_dpop_headers(rs_key, issuer.token(rs_key), "GET", path))  # fmt: skip
    assert_denied(refused, 401, "invalid_dpop_proof")

    # iat: 10 s in the future accepted, 60 s refused (FAPI 2.0 §5.3.2.1).
    for ahead, status in ((9, 200), (61, 401)):
        token = issuer.token(ok_key)
        proof = make_proof(ok_key, "GET", f"https://api.test{path}", access_token=token,
                           iat=time.time() + ahead)  # fmt: skip
        reply = send(envoy, pki, pki.client, path,
                     [("authorization", f"DPoP {token}"), ("dpop", proof)])  # fmt: skip
        assert reply.status == status, (ahead, reply)

    # No token in the query (FAPI 2.0 §5.3.4, RFC 6750 §2.3).
    bound = certificate_bound_token(issuer, pki.client)
    in_query = send(envoy, pki, pki.client, f"{path}?access_token={bound}", bearer(bound))
    assert in_query.status in (400, 401), in_query

    # Bound tokens only.
    assert send(envoy, pki, pki.client, path, bearer(issuer.token(None))).status == 401


# --- XFCC from a trusted front proxy --------------------------------------------------------------


def test_xfcc_from_the_trusted_proxy(
    xfcc_envoy: tuple[EnvoyProcess, int], xfcc_service: ServiceProcess, issuer: TestIssuer,
    pki: MtlsPki,
) -> None:  # fmt: skip
    proxy, _ = xfcc_envoy
    for identity in (pki.client, pki.self_signed):  # self-signed is fine (RFC 8705 §2.2)
        bound = certificate_bound_token(issuer, identity)
        good = send(proxy, pki, identity, "/mtls/accounts", bearer(bound))
        assert good.status == 200, good
    token = certificate_bound_token(issuer, pki.client)
    wrong = send(proxy, pki, pki.other_client, "/mtls/accounts", bearer(token))
    assert_denied(wrong, 401, "invalid_token")
    assert reason(wrong, xfcc_service) == "client_certificate_mismatch"
    none = send(proxy, pki, None, "/mtls/accounts", bearer(token))
    assert_denied(none, 401, "invalid_token")
    assert reason(none, xfcc_service) == "client_certificate_missing"


def test_xfcc_forged_by_the_client_is_replaced_by_the_front_proxy(
    xfcc_envoy: tuple[EnvoyProcess, int], xfcc_service: ServiceProcess, issuer: TestIssuer,
    pki: MtlsPki,
) -> None:  # fmt: skip
    proxy, _ = xfcc_envoy
    token = certificate_bound_token(issuer, pki.client)
    forged = f"By={PROXY_URI};Hash={pki_hash(pki.client)}"
    reply = send(proxy, pki, pki.other_client, "/mtls/accounts",
                 [*bearer(token), ("x-forwarded-client-cert", forged)])  # fmt: skip
    assert_denied(reply, 401, "invalid_token")
    assert reason(reply, xfcc_service) == "client_certificate_mismatch"


def test_xfcc_from_an_untrusted_proxy_is_refused(
    xfcc_envoy: tuple[EnvoyProcess, int], xfcc_service: ServiceProcess, issuer: TestIssuer,
    pki: MtlsPki,
) -> None:  # fmt: skip
    # Straight to the inner proxy, with an element another proxy would have added.
    _, inner = xfcc_envoy
    token = certificate_bound_token(issuer, pki.client)
    untrusted = f"By=spiffe://dpop.test/other-proxy;Hash={pki_hash(pki.client)}"
    reply = send_plain(("127.0.0.1", inner), "/mtls/accounts",
                       [*bearer(token), ("x-forwarded-client-cert", untrusted)])  # fmt: skip
    assert_denied(reply, 401, "invalid_token")
    assert reason(reply, xfcc_service) == "client_certificate_untrusted"


def with_chain(identity: Identity, intermediate: Identity) -> Identity:
    """``identity`` presenting its intermediate too (a TLS client sends the chain it has; the
    listener trusts only the root)."""
    chain = identity.cert_file.with_name(identity.cert_file.stem + "-chain.pem")
    chain.write_text(identity.pem + intermediate.pem, encoding="ascii")
    return dataclasses.replace(identity, cert_file=chain)


def pki_hash(identity: Identity) -> str:
    """XFCC's ``Hash=`` of ``identity``: hex SHA-256 of its DER."""
    return hashlib.sha256(identity.der).hexdigest()
