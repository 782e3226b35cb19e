"""Telemetry test helpers: the SDK's in-memory span exporter and metric reader, a JSON log
capture, and the real gRPC server run in-process on loopback with that telemetry.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc as pb_grpc
from verifier.app import App, build_app
from verifier.config import Settings
from verifier.server.runtime import ListeningAddresses, serve
from verifier.telemetry import DecisionLog, Telemetry
from verifier.telemetry.logs import JsonFormatter


@dataclass
class Observed:
    """A :class:`Telemetry` recording into memory, and what it recorded."""

    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    log: io.StringIO = field(default_factory=io.StringIO)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines() if line]

    def decision_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == "decision"]

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        points: list[Any] = []
        if data is None:
            return points
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def everything_exported(self) -> str:
        """Every span (as JSON), metric point and log line, as one string to search."""
        parts = [span.to_json() for span in self.finished()]
        data = self.metrics.get_metrics_data()
        parts.append(data.to_json() if data is not None else "")
        parts.append(self.log.getvalue())
        return "\n".join(parts)


def observed_telemetry(*, mode: str = "all", sample: float = 1.0) -> Observed:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        decision_log=DecisionLog(mode, sample),
    )
    return Observed(telemetry, spans, reader)


@contextmanager
def captured_logs(observed: Observed) -> Iterator[None]:
    """Every log record of the process (service and decision logs) as JSON into
    ``observed.log`` while inside."""
    handler = logging.StreamHandler(observed.log)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@asynccontextmanager
async def inprocess_service(
    settings: Settings, telemetry: Telemetry
) -> AsyncIterator[tuple[pb_grpc.VerifierServiceStub, App, str]]:
    """The real server (``runtime.serve``) with the app built by ``build_app``, on loopback:
    yields a Verify stub, the app and the address."""
    app = build_app(settings, telemetry)
    await app.start()
    stop = asyncio.Event()
    bound: list[ListeningAddresses] = []
    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(
            settings,
            app.engine,
            app.replay,
            ready_event=ready,
            on_listening=bound.append,
            stop_event=stop,
            handle_signals=False,
            telemetry=telemetry,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    channel = grpc.aio.insecure_channel(bound[0].main)
    try:
        stub = pb_grpc.VerifierServiceStub(channel)  # type: ignore[no-untyped-call]
        yield stub, app, bound[0].main
    finally:
        await channel.close()
        stop.set()
        await task
        await app.close()
