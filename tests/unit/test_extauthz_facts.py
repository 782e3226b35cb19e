"""CheckRequest -> RequestFacts: what Envoy sends, read the way the engine needs it."""

from __future__ import annotations

from typing import Any

import pytest

from verifier._generated.envoy.config.core.v3 import address_pb2, base_pb2
from verifier._generated.envoy.service.auth.v3 import attribute_context_pb2 as attrs
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier.domain.model import Mode, Policy
from verifier.domain.routes import parse_routes
from verifier.doors.extauthz_facts import check_request_facts, request_headers
from verifier.doors.target_uri import PublicUrlOptions

ROUTES = parse_routes(
    [{"host": "api.test", "path_prefix": "/legacy", "mode": "allow-bearer"}],
    default=Policy(nonce_required=True),
)


def check_request(
    headers: dict[str, str] | None = None,
    raw: list[tuple[str, str]] | None = None,
    **http: Any,
) -> pb.CheckRequest:
    fields: dict[str, Any] = {"method": "GET", "scheme": "http", "host": "api.test", "path": "/o"}
    fields.update(http)
    request = attrs.AttributeContext.HttpRequest(headers=headers or {}, **fields)
    if raw is not None:
        request.header_map.CopyFrom(
            base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in raw]
            )
        )
    source = attrs.AttributeContext.Peer(
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="192.0.2.7", port_value=5555)
        )
    )
    return pb.CheckRequest(
        attributes=attrs.AttributeContext(
            source=source, request=attrs.AttributeContext.Request(http=request)
        )
    )


def facts_of(request: pb.CheckRequest, options: PublicUrlOptions | None = None) -> Any:
    headers = request_headers(request.attributes.request.http)
    return check_request_facts(
        request, headers, routes=ROUTES, public_url=options or PublicUrlOptions()
    )


def test_the_fields_envoy_sends() -> None:
    facts = facts_of(
        check_request(
            {
                ":authority": "api.test",
                ":path": "/o?q=%20x",
                "authorization": "DPoP t",
                "dpop": "p",
            },
            method="POST",
            path="/o?q=%20x",
        )
    )
    assert (facts.method, facts.target_uri) == ("POST", "http://api.test/o?q=%20x")
    assert (facts.authorization, facts.dpop) == (("DPoP t",), ("p",))
    assert facts.client_address == "192.0.2.7"
    assert (facts.policy, facts.route) == (Policy(Mode.REQUIRE, nonce_required=True), "default")


@pytest.mark.parametrize(
    ("headers", "dpop", "authorization"),
    [
        # Envoy joins repeated headers with a comma: passed on unchanged, so the engine sees
        # two proofs (proof_multiple) or two credentials (authorization_multiple).
        ({"dpop": "a.b.c,d.e.f"}, ("a.b.c,d.e.f",), ()),
        ({"authorization": "DPoP x, Bearer y"}, (), ("DPoP x, Bearer y",)),
        ({"DPoP": "p"}, ("p",), ()),
        ({}, (), ()),
    ],
)
def test_joined_headers_pass_through(
    headers: dict[str, str], dpop: tuple[str, ...], authorization: tuple[str, ...]
) -> None:
    facts = facts_of(check_request(headers))
    assert (facts.dpop, facts.authorization) == (dpop, authorization)


def test_raw_header_map_keeps_duplicates_apart() -> None:
    request = check_request(raw=[("dpop", "a.b.c"), ("DPoP", "d.e.f"), ("authorization", "DPoP t")])
    facts = facts_of(request)
    assert facts.dpop == ("a.b.c", "d.e.f")
    assert facts.authorization == ("DPoP t",)


def test_pseudo_headers_fill_empty_fields() -> None:
    request = check_request(
        {":method": "PUT", ":scheme": "https", ":authority": "api.test:8443", ":path": "/legacy/x"},
        method="",
        scheme="",
        host="",
        path="",
    )
    facts = facts_of(request)
    assert (facts.method, facts.target_uri) == ("PUT", "https://api.test:8443/legacy/x")
    assert facts.policy.mode is Mode.ALLOW_BEARER


def test_route_is_chosen_on_the_public_url() -> None:
    options = PublicUrlOptions(public_base_urls={"svc:8080": "https://api.test"})
    facts = facts_of(check_request(host="svc:8080", path="/legacy/orders"), options)
    assert facts.target_uri == "https://api.test/legacy/orders"
    assert facts.policy.mode is Mode.ALLOW_BEARER and facts.route == "api.test/legacy"


def test_missing_path_gives_an_empty_target() -> None:
    assert facts_of(check_request(path="")).target_uri == ""


def test_header_names_are_lower_cased_and_repeats_kept_in_order() -> None:
    request = check_request({"DPoP": "a", "dpop": "b", "X-Request-Id": "r"})
    headers = request_headers(request.attributes.request.http)
    assert sorted(headers["dpop"]) == ["a", "b"] and headers["x-request-id"] == ("r",)
    raw = check_request(raw=[("DPoP", "a"), ("dpop", "b"), ("Traceparent", "t1"), ("b3", "x")])
    headers = request_headers(raw.attributes.request.http)
    assert headers["dpop"] == ("a", "b") and headers["traceparent"] == ("t1",)


def test_trace_headers_come_from_whichever_header_source_envoy_used() -> None:
    from verifier.telemetry import trace_headers

    plain = check_request({"traceparent": "00-t-p-01", "B3": "b", "x-other": "o"})
    assert trace_headers(request_headers(plain.attributes.request.http)) == {
        "traceparent": "00-t-p-01",
        "b3": "b",
    }
    raw = check_request(raw=[("TraceParent", "first"), ("traceparent", "second"), ("baggage", "")])
    assert trace_headers(request_headers(raw.attributes.request.http)) == {
        "traceparent": "first",
        "baggage": "",
    }
    assert trace_headers({}) == {}
