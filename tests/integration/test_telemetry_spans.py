"""Traces, metrics and decision logs of real Verify calls, recorded with the OpenTelemetry SDK's
in-memory span exporter and metric reader.

The server is the real runtime (``runtime.serve``) with the app wired by ``build_app`` on
loopback; the caller sends a W3C ``traceparent`` in gRPC metadata, as a gateway would.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.redis_server import RedisServer
from tests.support.service import AUDIENCE, ISSUER, TestIssuer
from tests.support.telemetry import Observed, captured_logs, inprocess_service, observed_telemetry
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.cli.mint import KeyPair, generate_key, make_proof
from verifier.config import IssuerSettings, Settings
from verifier.telemetry import hash_jkt

URL = "https://api.test/orders"
VERIFY_SPAN = "dpop.verifier.v1.VerifierService/Verify"


def _settings(issuer: TestIssuer, **overrides: Any) -> Settings:
    return Settings(
        listen="127.0.0.1:0",
        shutdown_grace_seconds=0,
        issuers=(
            IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(issuer.jwks_file)),
        ),
        **overrides,
    )


def _traceparent() -> tuple[int, int, tuple[tuple[str, str], ...]]:
    trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    return trace_id, span_id, (("traceparent", f"00-{trace_id:032x}-{span_id:016x}-01"),)


def _request(client: KeyPair, token: str, *, url: str = URL, proof_url: str = URL) -> Any:
    return pb.VerifyRequest(
        method="GET",
        target_uri=url,
        authorization=[f"DPoP {token}"],
        dpop=[make_proof(client, "GET", proof_url, access_token=token)],
        route="orders",
    )


def _tree(spans: list[ReadableSpan], trace_id: int) -> dict[str, Any]:
    """The spans of one trace as {name: (span, parent name)}; names are unique per call."""
    ours = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in ours}
    return {
        s.name: (
            s,
            by_id[s.parent.span_id].name if s.parent and s.parent.span_id in by_id else None,
        )
        for s in ours
    }


@pytest.fixture
def issuer(tmp_path: Path) -> TestIssuer:
    return TestIssuer(tmp_path)


@pytest.fixture
def client() -> KeyPair:
    return generate_key("ES256")


@pytest.fixture
def observed() -> Observed:
    return observed_telemetry()


async def test_allow_continues_the_callers_trace_with_one_child_span_per_stage(
    issuer: TestIssuer, client: KeyPair, observed: Observed
) -> None:
    trace_id, parent_id, metadata = _traceparent()
    token = issuer.token(client, client_id="app-1")
    with captured_logs(observed):
        async with inprocess_service(_settings(issuer), observed.telemetry) as (stub, _, _):
            response = await stub.Verify(_request(client, token), metadata=metadata)
    assert response.reason_code == "ok"

    tree = _tree(observed.finished(), trace_id)
    assert set(tree) == {
        VERIFY_SPAN,
        "dpop.proof.verify",
        "dpop.token.validate",
        "dpop.key_source.keys",
        "dpop.replay.first_use",
    }
    server, parent = tree[VERIFY_SPAN]
    assert parent is None and server.parent is not None and server.parent.span_id == parent_id
    assert server.kind is SpanKind.SERVER
    assert tree["dpop.proof.verify"][1] == VERIFY_SPAN
    assert tree["dpop.token.validate"][1] == VERIFY_SPAN
    assert tree["dpop.key_source.keys"][1] == "dpop.token.validate"
    assert tree["dpop.replay.first_use"][1] == VERIFY_SPAN
    assert dict(server.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "dpop.verifier.v1.VerifierService",
        "rpc.method": "Verify",
        "dpop.decision": "allow",
        "dpop.reason": "ok",
        "dpop.http_status": 200,
        "dpop.proof.alg": "ES256",
        "dpop.jkt_hash": hash_jkt(client.jkt),
        "dpop.token.issuer": ISSUER,
        "dpop.client_id": "app-1",
        "http.route": "orders",
        "http.request.method": "GET",
    }
    assert server.status.status_code is StatusCode.UNSET
    proof_span = tree["dpop.proof.verify"][0]
    assert proof_span.attributes["dpop.jkt_hash"] == hash_jkt(client.jkt)
    assert tree["dpop.replay.first_use"][0].attributes["dpop.replay.outcome"] == "first_use"

    (line,) = observed.decision_lines()
    assert line["trace_id"] == f"{trace_id:032x}"
    assert line["span_id"] == f"{server.context.span_id:016x}"
    assert (line["decision"], line["reason"], line["level"]) == ("allow", "ok", "INFO")
    assert (line["issuer"], line["subject"], line["client_id"]) == (ISSUER, "alice", "app-1")
    assert (line["route"], line["rpc"], line["jkt_hash"]) == (
        "orders",
        "Verify",
        hash_jkt(client.jkt),
    )
    assert line["latency_ms"] > 0


async def test_denied_proof_ends_in_the_proof_span_with_its_reason(
    issuer: TestIssuer, client: KeyPair, observed: Observed
) -> None:
    trace_id, _, metadata = _traceparent()
    request = _request(client, issuer.token(client), proof_url="https://api.test/admin")
    with captured_logs(observed):
        async with inprocess_service(_settings(issuer), observed.telemetry) as (stub, _, _):
            response = await stub.Verify(request, metadata=metadata)
    assert response.reason_code == "proof_htu_mismatch"

    tree = _tree(observed.finished(), trace_id)
    assert set(tree) == {VERIFY_SPAN, "dpop.proof.verify"}  # the token is never looked at
    server = tree[VERIFY_SPAN][0]
    assert server.attributes["dpop.decision"] == "deny"
    assert server.attributes["dpop.reason"] == "proof_htu_mismatch"
    assert server.attributes["dpop.rfc_error"] == "invalid_dpop_proof"
    assert server.attributes["dpop.http_status"] == 401
    assert server.attributes["dpop.jkt_hash"] == hash_jkt(client.jkt)
    assert server.status.status_code is StatusCode.UNSET  # a denial is not a fault
    assert tree["dpop.proof.verify"][0].attributes["dpop.reason"] == "proof_htu_mismatch"
    (line,) = observed.decision_lines()
    assert (line["decision"], line["reason"], line["level"]) == (
        "deny",
        "proof_htu_mismatch",
        "INFO",
    )

    decisions = observed.metric_points("dpop_verifier.decisions")
    assert {(p.attributes["dpop.reason"], p.value) for p in decisions} == {
        ("proof_htu_mismatch", 1)
    }


async def test_replay_is_marked_on_the_replay_span_and_counted(
    issuer: TestIssuer, client: KeyPair, observed: Observed
) -> None:
    request = _request(client, issuer.token(client, client_id="app-2"))
    trace_id, _, metadata = _traceparent()
    with captured_logs(observed):
        async with inprocess_service(_settings(issuer), observed.telemetry) as (stub, _, _):
            first = await stub.Verify(request)
            second = await stub.Verify(request, metadata=metadata)
    assert (first.reason_code, second.reason_code) == ("ok", "replayed")

    tree = _tree(observed.finished(), trace_id)
    replay_span = tree["dpop.replay.first_use"][0]
    assert replay_span.attributes["dpop.replay.outcome"] == "replayed"
    assert replay_span.attributes["dpop.replay.store"] == "memory"
    server = tree[VERIFY_SPAN][0]
    assert server.attributes["dpop.reason"] == "replayed"
    # The token had been verified before the replay was found: who it was is still recorded.
    assert server.attributes["dpop.client_id"] == "app-2"
    assert server.attributes["dpop.token.issuer"] == ISSUER

    counts = {
        (p.attributes["dpop.decision"], p.attributes["dpop.reason"]): p.value
        for p in observed.metric_points("dpop_verifier.decisions")
    }
    assert counts == {("allow", "ok"): 1, ("deny", "replayed"): 1}
    replay = {
        p.attributes["dpop.replay.outcome"]: p.count
        for p in observed.metric_points("dpop_verifier.replay_store.duration")
    }
    assert replay == {"first_use": 1, "replayed": 1}
    durations = observed.metric_points("dpop_verifier.verification.duration")
    assert sum(p.count for p in durations) == 2
    assert [p.value for p in observed.metric_points("dpop_verifier.requests.in_flight")] == [0]
    lines = observed.decision_lines()
    assert [(x["reason"], x["client_id"]) for x in lines] == [
        ("ok", "app-2"),
        ("replayed", "app-2"),
    ]


async def test_store_unavailable_is_an_error_span_an_error_log_and_a_counted_error(
    issuer: TestIssuer, client: KeyPair, observed: Observed
) -> None:
    # A full in-memory store refuses new proofs rather than forget live ones: unavailable.
    settings = _settings(issuer, memory_replay_max_entries=1)
    trace_id, _, metadata = _traceparent()
    with captured_logs(observed):
        async with inprocess_service(settings, observed.telemetry) as (stub, _, _):
            assert (await stub.Verify(_request(client, issuer.token(client)))).reason_code == "ok"
            response = await stub.Verify(_request(client, issuer.token(client)), metadata=metadata)
    assert response.reason_code == "replay_store_unavailable"

    tree = _tree(observed.finished(), trace_id)
    replay_span = tree["dpop.replay.first_use"][0]
    assert replay_span.status.status_code is StatusCode.ERROR
    assert replay_span.attributes["dpop.replay.outcome"] == "unavailable"
    server = tree[VERIFY_SPAN][0]
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes["dpop.reason"] == "replay_store_unavailable"
    assert server.attributes["dpop.http_status"] == 503

    (error,) = observed.metric_points("dpop_verifier.replay_store.errors")
    assert error.value == 1 and error.attributes["dpop.replay.store"] == "memory"
    lines = observed.decision_lines()
    assert [(x["reason"], x["level"]) for x in lines] == [
        ("ok", "INFO"),
        ("replay_store_unavailable", "ERROR"),
    ]


async def test_no_raw_token_proof_or_thumbprint_in_spans_metrics_or_logs(
    issuer: TestIssuer, client: KeyPair, observed: Observed
) -> None:
    token = issuer.token(client, client_id="app-3")
    requests = [
        _request(client, token),  # allow
        _request(client, token, proof_url="https://api.test/other"),  # deny in the proof
        _request(client, issuer.token(generate_key("ES256"))),  # deny at the binding
    ]
    requests.append(requests[0])  # replay
    with captured_logs(observed):
        async with inprocess_service(_settings(issuer), observed.telemetry) as (stub, _, _):
            for request in requests:
                await stub.Verify(request, metadata=_traceparent()[2])
    exported = observed.everything_exported()
    assert len(observed.decision_lines()) == 4
    secrets_sent = {token, client.jkt}
    for request in requests:
        secrets_sent.add(request.authorization[0].split()[1])
        secrets_sent.update(request.dpop)
    for secret in secrets_sent:
        assert secret not in exported
        for part in secret.split("."):  # nor any JWS part on its own (signature, payload)
            assert len(part) < 16 or part not in exported


async def test_trace_continues_from_envoy_headers_when_metadata_has_none(
    observed: Observed,
) -> None:
    # What the Check servicer does with the HTTP headers inside a CheckRequest.
    trace_id, span_id, metadata = _traceparent()
    with (
        captured_logs(observed),
        observed.telemetry.decision_scope(
            "envoy.service.auth.v3.Authorization/Check", headers=dict(metadata)
        ) as scope,
    ):
        assert scope.decision is None  # left unset: recorded as internal_error
    (span,) = observed.finished()
    assert span.context.trace_id == trace_id and span.parent.span_id == span_id
    assert span.attributes["rpc.method"] == "Check"
    assert span.attributes["dpop.reason"] == "internal_error"
    (line,) = observed.decision_lines()
    assert line["level"] == "ERROR" and line["trace_id"] == f"{trace_id:032x}"


async def test_metadata_wins_over_envoy_headers(observed: Observed) -> None:
    metadata_trace, _, metadata = _traceparent()
    _, _, headers = _traceparent()
    with observed.telemetry.decision_scope(
        "envoy.service.auth.v3.Authorization/Check", metadata=metadata, headers=dict(headers)
    ):
        pass
    (span,) = observed.finished()
    assert span.context.trace_id == metadata_trace


def test_json_log_lines_carry_no_exception_message() -> None:
    observed = observed_telemetry()
    client_input = "secret-" + secrets.token_hex(8)
    with captured_logs(observed):
        try:
            raise ValueError(client_input)
        except ValueError:
            logging.getLogger("verifier.test").exception("failed")
    (line,) = observed.log_lines()
    assert line["exception_type"] == "ValueError" and client_input not in json.dumps(line)


async def test_an_unsampled_call_records_no_spans_but_logs_the_callers_trace_id(
    issuer: TestIssuer, client: KeyPair, observed: Observed
) -> None:
    trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    metadata = (("traceparent", f"00-{trace_id:032x}-{span_id:016x}-00"),)  # not sampled
    with captured_logs(observed):
        async with inprocess_service(_settings(issuer), observed.telemetry) as (stub, _, _):
            response = await stub.Verify(_request(client, issuer.token(client)), metadata=metadata)
    assert response.reason_code == "ok"
    assert observed.finished() == []
    (line,) = observed.decision_lines()
    assert line["trace_id"] == f"{trace_id:032x}" and line["span_id"] == ""
    (count,) = observed.metric_points("dpop_verifier.decisions")
    assert count.value == 1


async def test_redis_outage_is_an_error_on_the_replay_span_with_the_error_type(
    issuer: TestIssuer, client: KeyPair, observed: Observed, redis_server: RedisServer
) -> None:
    settings = _settings(issuer, replay_url=redis_server.url)
    trace_id, _, metadata = _traceparent()
    with captured_logs(observed):
        async with inprocess_service(settings, observed.telemetry) as (stub, _, _):
            assert (await stub.Verify(_request(client, issuer.token(client)))).reason_code == "ok"
            redis_server.kill()
            response = await stub.Verify(_request(client, issuer.token(client)), metadata=metadata)
    assert response.reason_code == "replay_store_unavailable"
    tree = _tree(observed.finished(), trace_id)
    replay_span = tree["dpop.replay.first_use"][0]
    assert replay_span.attributes["dpop.replay.store"] == "redis"
    assert replay_span.attributes["dpop.replay.outcome"] == "unavailable"
    assert replay_span.attributes["error.type"]  # the Redis client's exception class
    assert replay_span.status.status_code is StatusCode.ERROR
    assert tree[VERIFY_SPAN][0].status.status_code is StatusCode.ERROR
    errors = observed.metric_points("dpop_verifier.replay_store.errors")
    assert [p.attributes["dpop.replay.store"] for p in errors] == ["redis"]
    assert observed.decision_lines()[-1]["level"] == "ERROR"
