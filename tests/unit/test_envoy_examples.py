"""The Istio example files are consistent with each other and with the service; the example
verifier config loads through the real settings loader. (The Envoy example is run for real by
tests/integration/test_envoy_e2e.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from verifier._generated.envoy.service.auth.v3 import attribute_context_pb2 as attrs
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier.app.doors import extauthz_options
from verifier.config import Settings, load_settings
from verifier.domain.model import Mode
from verifier.doors.extauthz_facts import check_request_facts, request_headers

ISTIO = Path(__file__).resolve().parents[2] / "examples" / "istio"


def load(name: str) -> Any:
    return yaml.safe_load((ISTIO / name).read_text(encoding="utf-8"))


def test_mesh_config_registers_a_fail_closed_grpc_provider() -> None:
    mesh = load("mesh-config.yaml")
    assert mesh["kind"] == "IstioOperator"
    (provider,) = mesh["spec"]["meshConfig"]["extensionProviders"]
    grpc = provider["envoyExtAuthzGrpc"]
    # The fields Istio's EnvoyExternalAuthorizationGrpcProvider defines, checked as istiod does.
    assert set(grpc) <= {"service", "port", "timeout", "failOpen", "statusOnError",
                         "clearRouteCache", "includeRequestBodyInCheck"}  # fmt: skip
    assert re.fullmatch(r"[a-z0-9.-]+", grpc["service"]) and 0 < grpc["port"] < 65536
    assert grpc["port"] == int(Settings().listen.rsplit(":", 1)[1])
    assert grpc["failOpen"] is False and 100 <= int(grpc["statusOnError"]) <= 599


def test_authorization_policy_delegates_to_that_provider() -> None:
    mesh = load("mesh-config.yaml")
    policy = load("authorization-policy.yaml")
    assert (policy["apiVersion"], policy["kind"]) == (
        "security.istio.io/v1", "AuthorizationPolicy",
    )  # fmt: skip
    spec = policy["spec"]
    assert spec["action"] == "CUSTOM"
    names = [p["name"] for p in mesh["spec"]["meshConfig"]["extensionProviders"]]
    assert spec["provider"]["name"] in names
    assert spec["rules"] == [{}]  # every request to the workload is checked
    assert spec["selector"]["matchLabels"]


def test_example_verifier_config_loads_and_maps_the_public_url() -> None:
    settings = load_settings(environ={"DPOP_CONFIG_FILE": str(ISTIO / "verifier-config.toml")})
    options = extauthz_options(settings)
    http = attrs.AttributeContext.HttpRequest(
        method="GET", scheme="http", host="orders.shop.svc.cluster.local:8080", path="/orders/7"
    )
    request = pb.CheckRequest(
        attributes=attrs.AttributeContext(request=attrs.AttributeContext.Request(http=http))
    )
    facts = check_request_facts(
        request, request_headers(http), routes=options.routes, public_url=options.public_url
    )
    assert facts.target_uri == "https://api.example.com/orders/7"
    assert facts.policy.mode is Mode.REQUIRE
    resolve = options.routes.resolve
    assert resolve("https://api.example.com/healthz").policy.mode is Mode.OFF
    assert resolve("https://api.example.com/catalog").policy.mode is Mode.REPORT_ONLY
