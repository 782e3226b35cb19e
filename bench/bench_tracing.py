"""Tracing cost: Verify throughput with telemetry off and on, as ratios measured in one run.

    .venv/bin/python bench/bench_tracing.py [--n 2000] [--concurrency 16] [--rounds 2]

Two views of the same question:
  * **in process**: the engine as the servicer runs it (decision scope + wrapped ports), with
    no telemetry vs. 100 % (and 10 %) sampled tracing into the SDK's batch processor and an
    in-memory exporter, plus metrics into an in-memory reader; no gRPC, so the CPU cost is
    plain;
  * **over gRPC**: a real ``dpop-verifier serve`` process on loopback, telemetry off vs.
    ``OTEL_TRACES_SAMPLER=always_on`` exporting spans (and metrics) over OTLP/gRPC to a local
    receiver that this process runs, plus the Prometheus endpoint.
The decision log is off in every configuration (measured separately in one extra row), so the
ratios show tracing alone. Configurations alternate for ``--rounds`` rounds; the best round
of each is kept. The load generator and the receiver share the machine with the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from bench.bench_core import drive_grpc, grpc_requests
from tests.support.net import free_port
from tests.support.otlp_receiver import otlp_grpc_receiver
from tests.support.service import AUDIENCE, ISSUER, ServiceProcess, TestIssuer
from verifier.api.verify_service import VERIFY_METHOD, request_facts
from verifier.app import build_app
from verifier.config import IssuerSettings, Settings
from verifier.telemetry import DecisionLog, Telemetry


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _telemetry(traced: bool, ratio: float) -> tuple[Telemetry, InMemorySpanExporter | None]:
    quiet = DecisionLog("none")
    if not traced:
        return Telemetry(decision_log=quiet), None
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=TraceIdRatioBased(ratio))
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, decision_log=quiet
    )
    return telemetry, exporter


async def bench_in_process(issuer: TestIssuer, n: int, traced: bool, ratio: float = 1.0) -> float:
    settings = Settings(
        issuers=(
            IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(issuer.jwks_file)),
        ),
        memory_replay_max_entries=max(n * 2, 1000),
    )
    telemetry, exporter = _telemetry(traced, ratio)
    app = build_app(settings, telemetry)
    await app.start()
    requests = grpc_requests("ES256", issuer, n)
    started = time.perf_counter()
    for request in requests:
        with telemetry.decision_scope(VERIFY_METHOD) as scope:
            scope.facts = request_facts(request)
            scope.decision = await app.engine.verify(scope.facts)
        if not scope.decision.allow:
            raise SystemExit(f"unexpected denial: {scope.decision.reason}")
    elapsed = time.perf_counter() - started
    await app.close()
    telemetry.shutdown()
    if exporter is not None and ratio == 1.0 and len(exporter.get_finished_spans()) < n:
        raise SystemExit("spans were dropped: raise OTEL_BSP_MAX_QUEUE_SIZE")
    return _rate(n, elapsed)


def bench_grpc(
    issuer: TestIssuer, workdir: Path, n: int, concurrency: int, env: dict[str, str]
) -> tuple[float, float, float]:
    config = workdir / f"config-{time.monotonic_ns()}.json"
    config.write_text(
        json.dumps(issuer.config(memory_replay_max_entries=max(n * 2, 1000))), encoding="utf-8"
    )
    service = ServiceProcess(config, {"DPOP_DECISION_LOG": "none", **env})
    try:
        requests = grpc_requests("ES256", issuer, n)
        per_sec, latencies, _ = asyncio.run(drive_grpc(service.address, requests, concurrency))
    finally:
        service.stop()
    latencies.sort()
    return (
        per_sec,
        statistics.median(latencies) * 1000,
        latencies[int(len(latencies) * 0.99) - 1] * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    best: dict[str, tuple[float, str, str]] = {}

    def keep(name: str, value: float, p50: str = "", p99: str = "") -> None:
        if name not in best or value > best[name][0]:
            best[name] = (value, p50, p99)

    with tempfile.TemporaryDirectory() as tmp, otlp_grpc_receiver() as (endpoint, store):
        workdir = Path(tmp)
        issuer = TestIssuer(workdir)
        traced_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_MAX_QUEUE_SIZE": str(max(4 * args.n, 2048)),
        }
        for _ in range(args.rounds):
            keep("in process: telemetry off", asyncio.run(bench_in_process(issuer, args.n, False)))
            keep(
                "in process: tracing 100% + metrics",
                asyncio.run(bench_in_process(issuer, args.n, True)),
            )
            keep(
                "in process: tracing 10% sampled + metrics",
                asyncio.run(bench_in_process(issuer, args.n, True, 0.1)),
            )
            per_sec, p50, p99 = bench_grpc(issuer, workdir, args.n, args.concurrency, {})
            keep("gRPC: telemetry off", per_sec, f"{p50:.2f}", f"{p99:.2f}")
            env = {**traced_env, "DPOP_METRICS_LISTEN": f"127.0.0.1:{free_port()}"}
            per_sec, p50, p99 = bench_grpc(issuer, workdir, args.n, args.concurrency, env)
            keep("gRPC: tracing 100% + OTLP + Prometheus", per_sec, f"{p50:.2f}", f"{p99:.2f}")
        per_sec, p50, p99 = bench_grpc(
            issuer, workdir, args.n, args.concurrency, {"DPOP_DECISION_LOG": "all"}
        )
        keep("gRPC: telemetry off, decision log all", per_sec, f"{p50:.2f}", f"{p99:.2f}")
        spans_received = len(store.spans())

    print(
        f"\nn={args.n} concurrency={args.concurrency} rounds={args.rounds} "
        f"cores={os.cpu_count()} python={sys.version.split()[0]} "
        f"(spans received by the local OTLP receiver: {spans_received:,})"
    )
    print(f"{'measurement':<42} {'per second':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (value, p50, p99) in best.items():
        print(f"{name:<42} {value:>11,.0f} {p50:>8} {p99:>8}")
    ratio: dict[str, Any] = {
        "in process": best["in process: tracing 100% + metrics"][0]
        / best["in process: telemetry off"][0],
        "over gRPC": best["gRPC: tracing 100% + OTLP + Prometheus"][0]
        / best["gRPC: telemetry off"][0],
    }
    for where, value in ratio.items():
        print(f"throughput with tracing on / off, {where}: {value:.2f}")


if __name__ == "__main__":
    main()
