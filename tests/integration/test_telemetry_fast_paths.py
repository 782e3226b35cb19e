"""The cheap telemetry paths: the port decorators on the thread-pool server, lean spans
(limits, concurrency), thread-safe call counting, and the fast OTLP span encoder, which must
produce exactly what the SDK's encoder produces.
"""

from __future__ import annotations

import random
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from tests.support.service import AUDIENCE, ISSUER, TestIssuer
from tests.support.telemetry import captured_logs, inprocess_service, observed_telemetry
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.cli.mint import generate_key, make_proof
from verifier.config import IssuerSettings, Settings
from verifier.domain.model import Decision
from verifier.domain.reasons import Reason, info
from verifier.telemetry.otlp import SpanEncoder

URL = "https://api.test/orders"
VERIFY_SPAN = "dpop.verifier.v1.VerifierService/Verify"


def _settings(issuer: TestIssuer) -> Settings:
    return Settings(
        listen="127.0.0.1:0",
        shutdown_grace_seconds=0,
        issuers=(
            IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(issuer.jwks_file)),
        ),
    )


def _allow() -> Decision:
    reason = info(Reason.OK)
    return Decision(
        allow=True,
        reason=Reason.OK,
        message=reason.message,
        rfc_error=reason.rfc_error,
        http_status=200,
    )


async def test_a_cached_token_and_the_replay_write_are_traced_on_the_worker_thread(
    tmp_path: Path,
) -> None:
    issuer, client = TestIssuer(tmp_path), generate_key("ES256")
    token = issuer.token(client, client_id="app-9")
    observed = observed_telemetry()
    traces = []
    with captured_logs(observed):
        async with inprocess_service(_settings(issuer), observed.telemetry) as (stub, _, _):
            for _ in range(2):  # the second call finds the token in the verified-token cache
                trace_id = secrets.randbits(128) | 1
                traces.append(trace_id)
                request = pb.VerifyRequest(
                    method="GET",
                    target_uri=URL,
                    authorization=[f"DPoP {token}"],
                    dpop=[make_proof(client, "GET", URL, access_token=token)],
                )
                metadata = (("traceparent", f"00-{trace_id:032x}-{1:016x}-01"),)
                assert (await stub.Verify(request, metadata=metadata)).reason_code == "ok"

    spans = observed.finished()
    first = {s.name: s for s in spans if s.context.trace_id == traces[0]}
    second = {s.name: s for s in spans if s.context.trace_id == traces[1]}
    assert "dpop.key_source.keys" in first  # the first call looked the key up
    assert set(second) == {
        VERIFY_SPAN,
        "dpop.proof.verify",
        "dpop.token.validate",
        "dpop.replay.first_use",
    }
    server = second[VERIFY_SPAN]
    cached = second["dpop.token.validate"]
    assert cached.parent is not None and cached.parent.span_id == server.context.span_id
    assert dict(cached.attributes or {}) == {
        "dpop.token.issuer": ISSUER,
        "dpop.client_id": "app-9",
    }
    assert cached.start_time is not None and cached.end_time is not None
    assert server.start_time <= cached.start_time <= cached.end_time <= server.end_time  # type: ignore[operator]
    replay = second["dpop.replay.first_use"]
    assert replay.parent is not None and replay.parent.span_id == server.context.span_id
    assert replay.attributes is not None and replay.attributes["dpop.replay.outcome"] == "first_use"
    assert server.attributes is not None and server.attributes["dpop.client_id"] == "app-9"
    replay_points = observed.metric_points("dpop_verifier.replay_store.duration")
    assert sum(p.count for p in replay_points) == 2
    lines = observed.decision_lines()
    assert [line["client_id"] for line in lines] == ["app-9", "app-9"]
    assert lines[1]["span_id"] == f"{server.context.span_id:016x}"


def test_calls_counted_from_many_threads_add_up() -> None:
    observed = observed_telemetry(mode="none")
    telemetry = observed.telemetry
    barrier = threading.Barrier(8)

    def calls(_: int) -> None:
        barrier.wait()
        for _ in range(250):
            with (
                telemetry.decision_scope(VERIFY_SPAN) as scope,
                telemetry.child_span("dpop.replay.first_use") as child,
            ):
                child.set_attribute("dpop.replay.outcome", "first_use")
                scope.decision = _allow()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(calls, range(8)))

    (decisions,) = observed.metric_points("dpop_verifier.decisions")
    assert decisions.value == 2000
    (in_flight,) = observed.metric_points("dpop_verifier.requests.in_flight")
    assert in_flight.value == 0
    spans = observed.finished()
    servers = {s.context.span_id: s for s in spans if s.name == VERIFY_SPAN}
    children = [s for s in spans if s.name == "dpop.replay.first_use"]
    assert len(servers) == len(children) == 2000
    for child in children:  # each child under its own call's span, in the same trace
        assert child.parent is not None
        parent = servers[child.parent.span_id]
        assert parent.context.trace_id == child.context.trace_id


def test_span_attribute_limits_from_the_environment_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    observed = observed_telemetry()
    with observed.telemetry.decision_scope(VERIFY_SPAN) as scope:
        scope.decision = _allow()
    (span,) = observed.finished()
    assert span.attributes is not None and span.attributes["dpop.decision"] == "allo"


def _spans(rng: random.Random, count: int) -> list[ReadableSpan]:
    resources = [
        Resource.create({"service.name": "a", "n": 3}),
        Resource.create({"service.name": "b"}, schema_url="https://schema.test/1"),
    ]
    scopes: list[Any] = [
        InstrumentationScope("dpop-verifier", "1.0"),
        InstrumentationScope("other", None, "https://schema.test/2", {"k": 1}),
        None,
    ]
    statuses = [Status(StatusCode.UNSET), Status(StatusCode.ERROR, "boom"), Status(StatusCode.OK)]
    spans = []
    for i in range(count):
        state = TraceState([("k", "v")]) if i % 7 == 0 else None
        context = SpanContext(
            rng.getrandbits(128) | 1, rng.getrandbits(64) | 1, False, TraceFlags(1), state
        )
        parent = (
            None
            if i % 5 == 0
            else SpanContext(context.trace_id, rng.getrandbits(64) | 1, i % 3 == 0, TraceFlags(1))
        )
        attributes = {
            "text": "é✓" * (i % 3) + "x" * (200 if i % 11 == 0 else 1),
            "flag": i % 2 == 0,
            "int": i - 100,
            "min": -(1 << 63),
            "huge": 1 << 70,  # out of int64 range: the SDK's own handling
            "float": i / 3,
            "strings": ["a", "b"],
            "ints": (1, 2),
        }
        spans.append(
            ReadableSpan(
                f"span-{i % 4}",
                context,
                parent,
                resources[i % 2],
                attributes,
                [Event("event", {"x": 1}, 5)] if i % 4 == 0 else (),
                [Link(SpanContext(1, 2, False), {"link": "v"})] if i % 6 == 0 else (),
                list(SpanKind)[i % 5],
                None,
                statuses[i % 3],
                1_000 + i,
                2_000 + i,
                scopes[i % 3],
            )
        )
    return spans


def _service_spans() -> list[ReadableSpan]:
    """Spans as the service records them (lean spans): a remote parent, a local root, an
    error, a client span, attributes of every scalar type."""
    observed = observed_telemetry(mode="none")
    telemetry = observed.telemetry
    _, _, metadata = _traceparent_metadata()
    for index, rpc_metadata in enumerate((metadata, ())):
        with telemetry.decision_scope(VERIFY_SPAN, metadata=rpc_metadata) as scope:
            with (
                telemetry.child_span("dpop.token.validate", {"dpop.token.cache_hit": True}),
                telemetry.child_span(
                    "dpop.key_source.fetch", {"url.full": "https://x.test/j"}, SpanKind.CLIENT
                ) as fetch,
            ):
                fetch.set_status(Status(StatusCode.ERROR, "TimeoutError"))
                fetch.set_attribute("dpop.key_source.keys_found", index)
                fetch.set_attribute("ratio", 0.5)
            scope.decision = _allow()
    return observed.finished()


def _traceparent_metadata() -> tuple[int, int, tuple[tuple[str, str], ...]]:
    trace_id, span_id = secrets.randbits(128) | 1, secrets.randbits(64) | 1
    return trace_id, span_id, (("traceparent", f"00-{trace_id:032x}-{span_id:016x}-01"),)


def test_the_fast_encoder_builds_exactly_the_sdks_request() -> None:
    spans = _spans(random.Random(9), 120)
    service_spans = _service_spans()
    assert len(service_spans) == 6
    encoder = SpanEncoder()
    for _ in range(2):  # the second time from its caches
        assert encoder.request(spans) == encode_spans(spans)
        assert encoder.request(service_spans) == encode_spans(service_spans)
        mixed = service_spans + spans
        assert encoder.request(mixed) == encode_spans(mixed)
    assert encoder.request([]) == encode_spans([])
