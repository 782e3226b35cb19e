"""Small, real OTLP receivers for tests: the collector's trace and metrics services over gRPC
(from the ``opentelemetry-proto`` package), and OTLP/HTTP (protobuf) on a plain HTTP server.
They keep every export request they receive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.http_server import LoopbackHttpServer, QuietHandler

T = TypeVar("T")


class OtlpStore:
    """What a receiver got, safe to read from the test thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """Every span received, with its resource's attributes."""
        with self._lock:
            requests = list(self.trace_requests)
        found = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found

    def metric_names(self) -> set[str]:
        with self._lock:
            requests = list(self.metric_requests)
        return {
            metric.name
            for request in requests
            for resource_metrics in request.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }


def attributes(key_values: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` list -> dict of plain values."""
    result: dict[str, Any] = {}
    for kv in key_values:
        field = kv.value.WhichOneof("value")
        result[kv.key] = getattr(kv.value, field) if field else None
    return result


def wait_for(probe: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"nothing arrived within {timeout}s")


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: OtlpStore) -> None:
        self._store = store

    def Export(self, request: Any, context: Any) -> Any:
        with self._store._lock:
            self._store.trace_requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, store: OtlpStore) -> None:
        self._store = store

    def Export(self, request: Any, context: Any) -> Any:
        with self._store._lock:
            self._store.metric_requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@contextmanager
def otlp_grpc_receiver() -> Iterator[tuple[str, OtlpStore]]:
    """An OTLP/gRPC receiver on loopback: yields (``http://127.0.0.1:PORT``, store)."""
    store = OtlpStore()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(store), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(store), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        server.stop(None)


@contextmanager
def otlp_http_receiver() -> Iterator[tuple[str, OtlpStore]]:
    """An OTLP/HTTP (protobuf) receiver on loopback: yields (``http://127.0.0.1:PORT``, store)."""
    store = OtlpStore()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with store._lock:
                if self.path == "/v1/traces":
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    store.trace_requests.append(request)
                    reply = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    metrics = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    store.metric_requests.append(metrics)
                    reply = metrics_service_pb2.ExportMetricsServiceResponse()
                else:
                    self.send_error(404)
                    return
            self.send_body(reply.SerializeToString(), "application/x-protobuf")

    with LoopbackHttpServer(Handler) as server:
        yield server.base_url, store
