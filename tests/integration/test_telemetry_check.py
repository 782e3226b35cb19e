"""Envoy's ``Authorization/Check`` observed like ``Verify``: one server span continuing the
trace Envoy put in the HTTP request headers inside the CheckRequest (or in the gRPC metadata),
the same child spans, metrics labelled ``rpc.method=Check`` and a decision line.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc

from tests.support.service import AUDIENCE, ISSUER, TestIssuer
from tests.support.telemetry import captured_logs, inprocess_service, observed_telemetry
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
from verifier.cli.mint import generate_key, make_proof
from verifier.config import IssuerSettings, Settings
from verifier.telemetry import hash_jkt

CHECK_SPAN = "envoy.service.auth.v3.Authorization/Check"


def _check_request(headers: dict[str, str]) -> pb.CheckRequest:
    request = pb.CheckRequest()
    http = request.attributes.request.http
    http.method, http.scheme, http.host, http.path = "GET", "https", "api.test", "/orders"
    for name, value in headers.items():
        http.headers[name] = value
    return request


async def test_check_continues_envoys_trace_from_the_request_headers(tmp_path: Path) -> None:
    issuer, client = TestIssuer(tmp_path), generate_key("ES256")
    token = issuer.token(client, client_id="mesh-app")
    trace_id, parent_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    headers = {
        "authorization": f"DPoP {token}",
        "dpop": make_proof(client, "GET", "https://api.test/orders", access_token=token),
        "traceparent": f"00-{trace_id:032x}-{parent_id:016x}-01",
    }
    settings = Settings(
        listen="127.0.0.1:0",
        shutdown_grace_seconds=0,
        issuers=(
            IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(issuer.jwks_file)),
        ),
    )
    observed = observed_telemetry()
    with captured_logs(observed):
        async with inprocess_service(settings, observed.telemetry) as (_, _, address):
            channel = grpc.aio.insecure_channel(address)
            check = pb_grpc.AuthorizationStub(channel)
            response = await check.Check(_check_request(headers))
            again = await check.Check(_check_request(headers))  # the same proof: replayed
            await channel.close()
    assert response.status.code == 0 and again.status.code != 0

    spans = [s for s in observed.finished() if s.context.trace_id == trace_id]
    servers = [s for s in spans if s.name == CHECK_SPAN]
    assert len(servers) == 2 and all(s.parent.span_id == parent_id for s in servers)
    first = min(servers, key=lambda s: s.start_time)
    assert first.attributes["rpc.method"] == "Check"
    assert first.attributes["dpop.decision"] == "allow"
    assert first.attributes["dpop.client_id"] == "mesh-app"
    assert first.attributes["dpop.jkt_hash"] == hash_jkt(client.jkt)
    children = {s.name for s in spans if s.parent and s.parent.span_id == first.context.span_id}
    assert children == {"dpop.proof.verify", "dpop.token.validate", "dpop.replay.first_use"}

    counts = {
        (p.attributes["rpc.method"], p.attributes["dpop.reason"]): p.value
        for p in observed.metric_points("dpop_verifier.decisions")
    }
    assert counts == {("Check", "ok"): 1, ("Check", "replayed"): 1}
    lines = observed.decision_lines()
    assert [(x["rpc"], x["reason"]) for x in lines] == [("Check", "ok"), ("Check", "replayed")]
    assert all(x["trace_id"] == f"{trace_id:032x}" for x in lines)
    exported = observed.everything_exported()
    assert token not in exported and headers["dpop"] not in exported
