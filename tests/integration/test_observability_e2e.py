"""The real service process exporting to real receivers: spans and metrics over OTLP/gRPC to a
receiver this test runs, Prometheus text on ``DPOP_METRICS_LISTEN`` scraped over HTTP, and
decision lines on stderr. The caller's W3C ``traceparent`` travels in gRPC metadata.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import free_port
from tests.support.otlp_receiver import OtlpStore, attributes, otlp_grpc_receiver, wait_for
from tests.support.service import ServiceProcess, TestIssuer, dpop_request, running_service
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.cli.mint import generate_key
from verifier.telemetry import hash_jkt

SERVICE_NAME = "dpop-verifier-under-test"


@pytest.fixture(scope="module")
def observed_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, OtlpStore, str, TestIssuer]]:
    issuer = TestIssuer(tmp_path_factory.mktemp("issuer"))
    metrics_address = f"127.0.0.1:{free_port()}"
    with otlp_grpc_receiver() as (endpoint, store):
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": SERVICE_NAME,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "300",
            "DPOP_METRICS_LISTEN": metrics_address,
            "DPOP_LOG_FORMAT": "json",
        }
        path: Path = tmp_path_factory.mktemp("svc")
        with running_service(path, issuer, env) as service:
            yield service, store, metrics_address, issuer


def _traced_call(
    service: ServiceProcess, fields: dict[str, Any]
) -> tuple[int, int, pb.VerifyResponse]:
    trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    metadata = (("traceparent", f"00-{trace_id:032x}-{span_id:016x}-01"),)
    response = service.stub.Verify(pb.VerifyRequest(**fields), metadata=metadata, timeout=10)
    return trace_id, span_id, response


def test_spans_arrive_at_the_otlp_receiver_in_the_callers_trace(
    observed_service: tuple[ServiceProcess, OtlpStore, str, TestIssuer],
) -> None:
    service, store, _, issuer = observed_service
    client = generate_key("ES256")
    fields = dpop_request(client, issuer.token(client, client_id="e2e-app"))
    trace_id, parent_id, response = _traced_call(service, fields)
    assert response.reason_code == "ok"

    def ours() -> list[tuple[dict[str, Any], Any]]:
        found = [(r, s) for r, s in store.spans() if int.from_bytes(s.trace_id) == trace_id]
        return found if len(found) >= 4 else []

    spans = wait_for(ours)
    by_name = {span.name: (resource, span) for resource, span in spans}
    assert {
        "dpop.verifier.v1.VerifierService/Verify",
        "dpop.proof.verify",
        "dpop.token.validate",
        "dpop.replay.first_use",
    } <= set(by_name)
    resource, server = by_name["dpop.verifier.v1.VerifierService/Verify"]
    assert resource["service.name"] == SERVICE_NAME
    assert int.from_bytes(server.parent_span_id) == parent_id
    server_attributes = attributes(server.attributes)
    assert server_attributes["dpop.decision"] == "allow"
    assert server_attributes["dpop.reason"] == "ok"
    assert server_attributes["dpop.client_id"] == "e2e-app"
    assert server_attributes["dpop.jkt_hash"] == hash_jkt(client.jkt)
    token_span = by_name["dpop.token.validate"][1]
    for _, span in spans:
        expected_parent = token_span if span.name.startswith("dpop.key_source") else server
        if span.name != server.name:
            assert span.parent_span_id == expected_parent.span_id, span.name

    # OTLP metrics arrive too.
    wait_for(lambda: "dpop_verifier.decisions" in store.metric_names())

    # The decision line on stderr carries the same trace id, and no token or proof.
    def decision_line() -> dict[str, Any] | None:
        for line in list(service.stderr_lines):
            if line.startswith("{") and f"{trace_id:032x}" in line:
                entry: dict[str, Any] = json.loads(line)
                if entry.get("event") == "decision":
                    return entry
        return None

    line = wait_for(decision_line)
    assert (line["decision"], line["client_id"], line["subject"]) == ("allow", "e2e-app", "alice")
    # DPOP_LOG_FORMAT=json: the service's own log lines are JSON objects too.
    serving = [x for x in service.stderr_lines if "serving" in x and "verifier.server" in x]
    assert serving and json.loads(serving[0])["logger"] == "verifier.server.runtime"
    stderr = "".join(service.stderr_lines)
    assert fields["authorization"][0].split()[1] not in stderr
    assert fields["dpop"][0] not in stderr


def test_prometheus_endpoint_serves_the_decision_metrics(
    observed_service: tuple[ServiceProcess, OtlpStore, str, TestIssuer],
) -> None:
    service, _, metrics_address, issuer = observed_service
    client = generate_key("ES256")
    fields = dpop_request(client, issuer.token(client))
    assert _traced_call(service, fields)[2].reason_code == "ok"
    assert _traced_call(service, fields)[2].reason_code == "replayed"

    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as reply:
        assert reply.status == 200
        text = reply.read().decode("utf-8")
    families = {family.name: family for family in text_string_to_metric_families(text)}

    decisions = {
        (s.labels["dpop_decision"], s.labels["dpop_reason"]): s.value
        for s in families["dpop_verifier_decisions"].samples
        if s.name == "dpop_verifier_decisions_total"
    }
    assert decisions[("deny", "replayed")] >= 1 and decisions[("allow", "ok")] >= 1
    assert families["dpop_verifier_decisions"].type == "counter"

    duration = families["dpop_verifier_verification_duration_seconds"]
    assert duration.type == "histogram"
    counts = [s.value for s in duration.samples if s.name.endswith("_count")]
    assert sum(counts) >= 2
    replay = families["dpop_verifier_replay_store_duration_seconds"]
    outcomes = {s.labels["dpop_replay_outcome"] for s in replay.samples}
    assert {"first_use", "replayed"} <= outcomes
    (in_flight,) = families["dpop_verifier_requests_in_flight"].samples
    assert in_flight.value == 0
    assert "process_cpu_seconds" in families  # the process collector rides along
