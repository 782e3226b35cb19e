"""Forward-auth requests -> RequestFacts and answers: what each gateway sends, read the way
the engine needs it; who may ask; what goes back."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from verifier.domain.model import Decision, Mode, Policy, RequestFacts, TokenClaims
from verifier.domain.reasons import CATALOGUE, Reason
from verifier.domain.routes import parse_routes
from verifier.doors.answers import IdentityHeaders
from verifier.doors.forward_auth import (
    TOO_MANY_FIELDS,
    UNTRUSTED,
    ForwardAuthApp,
    ForwardAuthOptions,
    Refusal,
    allowed_headers,
    environ_headers,
    forward_auth_facts,
    trusted,
)
from verifier.doors.target_uri import PublicUrlOptions

ROUTES = parse_routes(
    [{"host": "api.test", "path_prefix": "/legacy", "mode": "allow-bearer"}],
    default=Policy(nonce_required=True),
)
OPTIONS = ForwardAuthOptions(routes=ROUTES)


def headers(**values: str) -> Any:
    """Header mapping as the WSGI environ gives it (names with ``_`` for ``-``)."""
    return environ_headers({"HTTP_" + k.upper(): v for k, v in values.items()})


def facts(peer: str = "127.0.0.1", options: ForwardAuthOptions = OPTIONS, **values: str) -> Any:
    return forward_auth_facts(headers(**values), peer, options)


def test_traefik_and_caddy_send_x_forwarded_method_uri_host_proto() -> None:
    got = facts(
        x_forwarded_method="POST",
        x_forwarded_proto="https",
        x_forwarded_host="api.test",
        x_forwarded_uri="/orders/42?q=%20x",
        x_forwarded_for="198.51.100.7",
        host="verifier:8081",
        authorization="DPoP t",
        dpop="p",
    )
    assert got == RequestFacts(
        method="POST",
        target_uri="https://api.test/orders/42?q=%20x",
        authorization=("DPoP t",),
        dpop=("p",),
        client_address="198.51.100.7",
        route="default",
        policy=Policy(nonce_required=True),
    )


def test_nginx_sends_x_original_method_and_uri_with_the_host() -> None:
    got = facts(x_original_method="GET", x_original_uri="/legacy/a", host="api.test")
    assert (got.method, got.target_uri) == ("GET", "http://api.test/legacy/a")
    assert got.policy.mode is Mode.ALLOW_BEARER
    assert got.client_address == "127.0.0.1"  # no X-Forwarded-For: the gateway itself


def test_x_forwarded_host_wins_over_host() -> None:
    got = facts(x_forwarded_method="PUT", x_forwarded_uri="/a", x_forwarded_host="api.test:8443",
                host="other")  # fmt: skip
    assert (got.method, got.target_uri) == ("PUT", "http://api.test:8443/a")


def test_the_same_request_described_twice_is_fine() -> None:
    got = facts(x_forwarded_method="GET", x_original_method="GET", x_forwarded_uri="/a",
                x_original_uri="/a", host="api.test")  # fmt: skip
    assert (got.method, got.target_uri) == ("GET", "http://api.test/a")


@pytest.mark.parametrize(
    "values",
    [
        # NGINX as its documentation configures it sets X-Original-URI and passes a client's
        # X-Forwarded-Uri through: the client must not choose the request decided.
        {"x_original_method": "GET", "x_original_uri": "/orders", "x_forwarded_uri": "/public"},
        {"x_original_method": "POST", "x_forwarded_method": "GET", "x_original_uri": "/orders"},
        # Traefik sets X-Forwarded-* and passes a client's X-Original-* through.
        {"x_forwarded_method": "GET", "x_forwarded_uri": "/orders", "x_original_uri": "/public"},
    ],
)
def test_two_different_descriptions_are_no_target(values: dict[str, str]) -> None:
    assert facts(host="api.test", **values).target_uri == ""  # request_invalid, never a guess


def test_a_client_forwarded_header_never_moves_the_target() -> None:
    options = ForwardAuthOptions(
        public_url=PublicUrlOptions(trusted_headers=frozenset({"forwarded", "x-forwarded-host"}))
    )
    got = facts(options=options, x_original_method="GET", x_original_uri="/orders",
                x_forwarded_proto="http", host="api.test",
                forwarded="host=other.test;proto=https")  # fmt: skip
    assert got.target_uri == "http://api.test/orders"


def test_of_a_list_header_the_element_the_nearest_proxy_wrote_counts() -> None:
    got = facts(
        x_forwarded_method="GET",
        x_forwarded_uri="/a",
        x_forwarded_host="evil.test, api.test",
        x_forwarded_proto="http, https",
        x_forwarded_for="203.0.113.9, 198.51.100.7",
    )
    assert got.target_uri == "https://api.test/a"
    assert got.client_address == "198.51.100.7"


@pytest.mark.parametrize(
    "values",
    [
        {"x_forwarded_uri": "/a", "host": "api.test"},  # no method
        {"x_forwarded_method": "GET", "host": "api.test"},  # no target
        {"x_forwarded_method": "GET", "x_forwarded_uri": "a", "host": "api.test"},  # not a path
        {"x_forwarded_method": "GET", "x_forwarded_uri": "https://api.test/a"},  # absolute form
    ],
)
def test_without_a_method_or_a_target_path_the_engine_gets_no_target(
    values: dict[str, str],
) -> None:
    got = facts(**values)
    assert isinstance(got, RequestFacts)
    assert got.target_uri == ""  # the engine answers request_invalid (400), never a guess


def test_public_base_urls_apply_as_for_check() -> None:
    options = ForwardAuthOptions(
        public_url=PublicUrlOptions(public_base_urls={"api.test": "https://api.example.com/v1"})
    )
    got = facts(options=options, x_original_method="GET", x_original_uri="/a", host="api.test")
    assert got.target_uri == "https://api.example.com/v1/a"


def test_a_caller_outside_the_trusted_proxies_gets_no_decision() -> None:
    options = ForwardAuthOptions(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    values = {"x_forwarded_method": "GET", "x_forwarded_uri": "/a", "host": "api.test"}
    assert facts("127.0.0.1", options, **values) is UNTRUSTED
    assert isinstance(facts("10.1.2.3", options, **values), RequestFacts)
    assert UNTRUSTED.status == 403 and UNTRUSTED.error == "untrusted_proxy"


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped: judged as IPv4
        ("10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("", False),
        ("unix:/tmp/x", False),
        ("not-an-address", False),
    ],
)
def test_trusted(peer: str, expected: bool) -> None:
    assert trusted(peer, ForwardAuthOptions().trusted_proxies) is expected


def test_too_many_header_fields_is_refused() -> None:
    options = ForwardAuthOptions(max_header_fields=10)
    values = {f"x_h{i}": "v" for i in range(11)}
    assert facts(options=options, **values) is TOO_MANY_FIELDS
    assert TOO_MANY_FIELDS.status == 431


def test_environ_headers_keeps_http_fields_only() -> None:
    got = environ_headers(
        {"HTTP_DPOP": "p", "HTTP_X_FORWARDED_URI": "/a", "REMOTE_ADDR": "1.2.3.4", "PATH_INFO": "/"}
    )
    assert dict(got) == {"dpop": ("p",), "x-forwarded-uri": ("/a",)}


def test_a_joined_dpop_value_is_passed_on_unchanged() -> None:
    # waitress joins repeated fields with ", ", as Envoy does: the engine sees two proofs.
    got = facts(x_forwarded_method="GET", x_forwarded_uri="/a", host="h", dpop="p1, p2")
    assert got.dpop == ("p1, p2",)


def allow(**kwargs: Any) -> Decision:
    fields: dict[str, Any] = {"allow": True, "reason": Reason.OK, "message": "ok"}
    fields.update(rfc_error=CATALOGUE[Reason.OK].rfc_error, http_status=200)
    fields.update(kwargs)
    return Decision(**fields)


def deny(reason: Reason, **kwargs: Any) -> Decision:
    info = CATALOGUE[reason]
    return Decision(allow=False, reason=reason, message=info.message + " (internal detail)",
                    rfc_error=info.rfc_error, http_status=info.http_status, **kwargs)  # fmt: skip


CLAIMS = TokenClaims(issuer="https://as", subject="alice", client_id="app", scope="read")


def test_allowed_headers_carry_the_identity_and_a_fresh_nonce() -> None:
    decision = allow(jkt="J", claims=CLAIMS, dpop_nonce="N")
    assert allowed_headers(decision, IdentityHeaders()) == [
        ("cache-control", "no-store"),
        ("x-dpop-jkt", "J"),
        ("x-auth-subject", "alice"),
        ("x-auth-client-id", "app"),
        ("x-auth-scope", "read"),
        ("x-auth-issuer", "https://as"),
        ("dpop-nonce", "N"),
    ]


def test_report_only_allow_names_the_reason_and_no_identity() -> None:
    decision = allow(reason=Reason.PROOF_MISSING, enforced=False, jkt="J")
    assert allowed_headers(decision, IdentityHeaders()) == [
        ("cache-control", "no-store"),
        ("x-dpop-report-only", "proof_missing"),
    ]


class _Engine:
    def __init__(self, decision: Decision | Exception) -> None:
        self.decision = decision
        self.seen: list[RequestFacts] = []

    def verify(self, facts: RequestFacts) -> Decision:
        self.seen.append(facts)
        if isinstance(self.decision, Exception):
            raise self.decision
        return self.decision


def call(app: ForwardAuthApp, environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body


ENVIRON = {
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_X_FORWARDED_METHOD": "GET",
    "HTTP_X_FORWARDED_URI": "/a",
    "HTTP_HOST": "api.test",
}


def test_the_app_never_raises_an_engine_failure_is_a_500_internal_error() -> None:
    status, headers, body = call(ForwardAuthApp(_Engine(RuntimeError("secret token"))), ENVIRON)
    assert status == "500 Internal Server Error"
    assert headers["cache-control"] == "no-store"
    assert json.loads(body)["error"] == "server_error"
    assert b"secret" not in body


def test_the_app_refuses_an_untrusted_caller_without_asking_the_engine() -> None:
    engine = _Engine(allow())
    status, headers, body = call(ForwardAuthApp(engine), {**ENVIRON, "REMOTE_ADDR": "192.0.2.1"})
    assert status == "403 Forbidden" and engine.seen == []
    assert json.loads(body) == {
        "error": "untrusted_proxy",
        "error_description": UNTRUSTED.description,
    }
    assert headers["content-type"] == "application/json"


def test_a_denial_is_the_reason_status_with_challenge_nonce_and_catalogue_message() -> None:
    decision = deny(Reason.NONCE_REQUIRED, www_authenticate='DPoP error="use_dpop_nonce"',
                    dpop_nonce="N1")  # fmt: skip
    status, headers, body = call(ForwardAuthApp(_Engine(decision)), ENVIRON)
    assert status == "401 Unauthorized"
    assert headers["www-authenticate"] == 'DPoP error="use_dpop_nonce"'
    assert headers["dpop-nonce"] == "N1"
    assert headers["cache-control"] == "no-store"
    assert json.loads(body) == {
        "error": "use_dpop_nonce",
        "error_description": CATALOGUE[Reason.NONCE_REQUIRED].message,
    }  # the catalogue's message, never the decision's internal detail


def test_the_engine_sees_what_the_gateway_forwarded() -> None:
    engine = _Engine(allow(jkt="J"))
    status, headers, body = call(ForwardAuthApp(engine), {**ENVIRON, "HTTP_DPOP": "p"})
    assert status == "200 OK" and body == b"" and headers["x-dpop-jkt"] == "J"
    assert engine.seen[0].target_uri == "http://api.test/a" and engine.seen[0].dpop == ("p",)


def test_refusals_are_refusal_values() -> None:
    assert isinstance(UNTRUSTED, Refusal) and isinstance(TOO_MANY_FIELDS, Refusal)
