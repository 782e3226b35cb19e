"""Tracing cost: Verify throughput and CPU per request with telemetry off and on, in one run.

    .venv/bin/python bench/bench_tracing.py [--n 3000] [--concurrency 16] [--rounds 3]

Two views of the same question:
  * **in process**: the engine driven as the thread-pool server drives it (a decision scope per
    call, ``Verifier.verify`` on this thread, the ports wrapped, the io loop in a thread), no
    gRPC. Telemetry off; tracing alone (100 % sampled); metrics alone; tracing + metrics; the
    same with 10 % sampling; and tracing through the SDK's own OTLP encoder
    for comparison. Spans go through the SDK's batch processor to an exporter that encodes
    them as the OTLP/gRPC exporter does and drops the bytes, so serialization is counted.
    ``cpu us/req`` is the process's CPU time (all threads, including the batch processor's)
    per request, the figure least disturbed by other load on the machine; ``per span`` is the
    tracing cost divided by the spans a call records.
  * **over gRPC**: a real ``dpop-verifier serve`` process on loopback (pinned to core 0, the
    load generator and the OTLP receiver to core 1, when there are two cores), telemetry off vs.
    ``OTEL_TRACES_SAMPLER=always_on`` exporting spans over OTLP/gRPC to a receiver in this
    process; metrics alone (OTLP and the Prometheus endpoint); and both; with the default
    batch-processor settings. ``cpu us/req`` is the service process's CPU time per request
    (from /proc).

The decision log is off in every configuration (one extra gRPC row has it on), so the ratios show
tracing and metrics. Configurations alternate for ``--rounds`` rounds; the best round of each is
kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from bench._procs import process_cpu_seconds
from bench.bench_core import drive_grpc, grpc_requests
from tests.support.net import free_port
from tests.support.otlp_receiver import otlp_grpc_receiver
from tests.support.service import AUDIENCE, ISSUER, ServiceProcess, TestIssuer
from verifier.app import build_app
from verifier.config import IssuerSettings, Settings
from verifier.doors.verify import VERIFY_METHOD, verify_request_facts
from verifier.telemetry import DecisionLog, Telemetry
from verifier.telemetry.otlp import SpanEncoder


class EncodingExporter(SpanExporter):
    """Encodes each batch as the OTLP/gRPC exporter does (or with the SDK's encoder), counts
    the spans and drops the bytes."""

    def __init__(self, sdk_encoder: bool = False) -> None:
        encoder = SpanEncoder()
        self._encode: Callable[[Sequence[ReadableSpan]], Any] = (
            encode_spans if sdk_encoder else encoder.request
        )
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._encode(spans)
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


_OTLP = {"OTEL_EXPORTER_OTLP_ENDPOINT": "{endpoint}", "OTEL_TRACES_SAMPLER": "always_on"}
_PROMETHEUS = {"DPOP_METRICS_LISTEN": "127.0.0.1:{port}"}
GRPC_CONFIGS: dict[str, dict[str, str]] = {
    "tracing 100%, OTLP": {**_OTLP, "OTEL_METRICS_EXPORTER": "none"},
    "metrics, OTLP + Prometheus": {**_OTLP, **_PROMETHEUS, "OTEL_TRACES_EXPORTER": "none"},
    "tracing 100% + metrics, OTLP + Prometheus": {**_OTLP, **_PROMETHEUS},
}

CONFIGS: dict[str, dict[str, Any]] = {
    "telemetry off": {},
    "tracing 100%": {"ratio": 1.0},
    "metrics": {"metrics": True},
    "tracing 100% + metrics": {"ratio": 1.0, "metrics": True},
    "tracing 10% + metrics": {"ratio": 0.1, "metrics": True},
    "tracing 100%, SDK's OTLP encoder": {"ratio": 1.0, "sdk_encoder": True},
}


def _telemetry(
    ratio: float | None = None,
    metrics: bool = False,
    sdk_encoder: bool = False,
) -> tuple[Telemetry, EncodingExporter | None]:
    quiet = DecisionLog("none")
    tracer_provider, exporter = None, None
    if ratio is not None:
        exporter = EncodingExporter(sdk_encoder)
        tracer_provider = TracerProvider(sampler=TraceIdRatioBased(ratio))
        processor = BatchSpanProcessor(exporter)
        tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()]) if metrics else None
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, decision_log=quiet
    )
    return telemetry, exporter


SDK_PIPELINE = False
"""``--sdk-pipeline``: every traced configuration through the SDK's OTLP
encoder (to measure a version of the service that used them)."""


def bench_in_process(issuer: TestIssuer, n: int, config: dict[str, Any]) -> dict[str, float]:
    settings = Settings(
        issuers=(
            IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(issuer.jwks_file)),
        ),
        memory_replay_max_entries=max(n * 2, 1000),
    )
    if SDK_PIPELINE and "ratio" in config:
        config = {**config, "sdk_encoder": True}
    telemetry, exporter = _telemetry(**config)
    loop = asyncio.new_event_loop()
    io_thread = threading.Thread(target=loop.run_forever, daemon=True)
    io_thread.start()
    app = build_app(settings, telemetry)
    asyncio.run_coroutine_threadsafe(app.start(), loop).result()
    engine = app.engine
    requests = grpc_requests("ES256", issuer, n)
    cpu, started = time.process_time(), time.perf_counter()
    for request in requests:
        with telemetry.decision_scope(VERIFY_METHOD) as scope:
            scope.facts = verify_request_facts(request)
            scope.decision = engine.verify(scope.facts)
        if not scope.decision.allow:
            raise SystemExit(f"unexpected denial: {scope.decision.reason}")
    if telemetry.tracer_provider is not None:
        telemetry.tracer_provider.force_flush()  # the export of the last spans counts too
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    asyncio.run_coroutine_threadsafe(app.close(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    io_thread.join()
    loop.close()
    telemetry.shutdown()
    spans = exporter.spans if exporter is not None else 0
    if exporter is not None and config.get("ratio") == 1.0 and spans < n:
        raise SystemExit(f"spans were dropped ({spans} for {n} calls)")
    return {"rate": n / elapsed, "cpu_us": cpu / n * 1e6, "spans_per_call": spans / n}


def _pin(pid: int, cpus: set[int]) -> None:
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # the thread ended
            os.sched_setaffinity(int(task), cpus)


def bench_grpc(
    issuer: TestIssuer, workdir: Path, n: int, concurrency: int, env: dict[str, str], pin: bool
) -> dict[str, float]:
    config = workdir / f"config-{time.monotonic_ns()}.json"
    config.write_text(
        json.dumps(issuer.config(memory_replay_max_entries=max(n * 2, 1000))), encoding="utf-8"
    )
    service = ServiceProcess(config, {"DPOP_DECISION_LOG": "none", **env})
    try:
        if pin:
            _pin(service.process.pid, {0})
        requests = grpc_requests("ES256", issuer, n)
        cpu = process_cpu_seconds(service.process.pid)
        per_sec, latencies, _ = asyncio.run(drive_grpc(service.address, requests, concurrency))
        cpu = process_cpu_seconds(service.process.pid) - cpu
    finally:
        service.stop()
    latencies.sort()
    return {
        "rate": per_sec,
        "cpu_us": cpu / (n + 1) * 1e6,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-grpc", action="store_true", help="only the in-process rows")
    parser.add_argument(
        "--sdk-pipeline",
        action="store_true",
        help="in process, trace through the SDK's OTLP encoder",
    )
    args = parser.parse_args()
    global SDK_PIPELINE
    SDK_PIPELINE = args.sdk_pipeline
    pin = (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})  # the load generator, the receiver and in-process runs

    best: dict[str, dict[str, float]] = {}

    def keep(name: str, result: dict[str, float]) -> None:
        old = best.get(name)
        if old is None:
            best[name] = result
            return
        # Each figure's best round: the highest rate, the lowest CPU and latency.
        for key, value in result.items():
            old[key] = max(old[key], value) if key == "rate" else min(old[key], value)

    spans_received = 0
    with tempfile.TemporaryDirectory() as tmp, otlp_grpc_receiver() as (endpoint, store):
        workdir = Path(tmp)
        issuer = TestIssuer(workdir)
        for _ in range(args.rounds):
            for name, config in CONFIGS.items():
                keep(f"in process: {name}", bench_in_process(issuer, args.n, config))
            if args.no_grpc:
                continue
            grpc_off = bench_grpc(issuer, workdir, args.n, args.concurrency, {}, pin)
            keep("gRPC: telemetry off", grpc_off)
            for name, env in GRPC_CONFIGS.items():
                env = {k: v.format(endpoint=endpoint, port=free_port()) for k, v in env.items()}
                before = len(store.spans())
                result = bench_grpc(issuer, workdir, args.n, args.concurrency, env, pin)
                if env.get("OTEL_TRACES_EXPORTER") != "none":
                    result["spans_per_call"] = (len(store.spans()) - before) / (args.n + 1)
                keep(f"gRPC: {name}", result)
        if not args.no_grpc:
            env = {"DPOP_DECISION_LOG": "all"}
            keep(
                "gRPC: telemetry off, decision log all",
                bench_grpc(issuer, workdir, args.n, args.concurrency, env, pin),
            )
        spans_received = len(store.spans())

    print(
        f"\nn={args.n} concurrency={args.concurrency} rounds={args.rounds} "
        f"cores={os.cpu_count()} pinned={pin} python={sys.version.split()[0]} "
        f"(spans received by the local OTLP receiver: {spans_received:,})"
    )
    print(
        f"{'measurement':<56} {'per second':>10} {'cpu us/req':>10} {'spans/call':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    for name, r in best.items():
        spans = f"{r['spans_per_call']:.2f}" if "spans_per_call" in r else ""
        p50 = f"{r['p50']:.2f}" if "p50" in r else ""
        p99 = f"{r['p99']:.2f}" if "p99" in r else ""
        print(f"{name:<56} {r['rate']:>10,.0f} {r['cpu_us']:>10.1f} {spans:>10} {p50:>7} {p99:>7}")

    off = best["in process: telemetry off"]
    print()
    for name in CONFIGS:
        if name == "telemetry off":
            continue
        row = best[f"in process: {name}"]
        extra = row["cpu_us"] - off["cpu_us"]
        line = (
            f"in process, {name}: throughput {row['rate'] / off['rate']:.2f} x off, "
            f"CPU {off['cpu_us'] / row['cpu_us']:.2f} x off (+{extra:.1f} us/req"
        )
        if row.get("spans_per_call") and "metrics" not in name:
            line += f", {extra / row['spans_per_call']:.1f} us per span"
        print(line + ")")
    if not args.no_grpc:
        grpc_off = best["gRPC: telemetry off"]
        for name in GRPC_CONFIGS:
            row = best[f"gRPC: {name}"]
            print(
                f"over gRPC, {name}: throughput {row['rate'] / grpc_off['rate']:.2f} x off, "
                f"service CPU {grpc_off['cpu_us'] / row['cpu_us']:.2f} x off "
                f"(+{row['cpu_us'] - grpc_off['cpu_us']:.1f} us/req)"
            )


if __name__ == "__main__":
    main()
