"""Build :class:`~verifier.telemetry.sink.Telemetry` from the settings and ``OTEL_*`` variables,
serve the Prometheus endpoint, and wrap the engine's ports.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from verifier.config import ConfigError, Settings
from verifier.config.telemetry import TelemetrySettings
from verifier.telemetry.sink import DecisionLog, Telemetry, service_version

_log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "dpop-verifier"

_OTLP_BROKEN_HINT = (
    "the OTLP exporter cannot be imported ({error}). If xds-protos is installed it has "
    "overwritten opentelemetry-proto's modules: run `python scripts/repair_otel_proto.py` "
    "(make install-dev does) or reinstall opentelemetry-proto"
)


def build_telemetry(settings: Settings, otel: TelemetrySettings) -> Telemetry:
    """The service's telemetry: exporters per ``otel``, the Prometheus reader when
    ``DPOP_METRICS_LISTEN`` is set, and the decision log per ``DPOP_DECISION_LOG*``.

    Raises :class:`ConfigError` when a configured exporter cannot be loaded.
    """
    decision_log = DecisionLog(settings.decision_log, settings.decision_log_sample)
    tracer_provider = _tracer_provider(otel) if otel.tracing else None
    readers = _metric_readers(settings, otel)
    meter_provider = None
    if readers:
        from opentelemetry.sdk.metrics import MeterProvider

        meter_provider = MeterProvider(metric_readers=readers, resource=_resource())
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, decision_log=decision_log
    )
    telemetry.prometheus_registry = next(
        (getattr(r, "dpop_registry", None) for r in readers if hasattr(r, "dpop_registry")), None
    )
    return telemetry


def _resource() -> Any:
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; the default name is ours, not
    # "unknown_service".
    detected = OTELResourceDetector().detect().attributes
    attributes: dict[str, Any] = {"service.version": service_version()}
    if not detected.get("service.name"):
        attributes["service.name"] = DEFAULT_SERVICE_NAME
    return Resource.create(attributes)


def _tracer_provider(otel: TelemetrySettings) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=_resource())  # sampler: OTEL_TRACES_SAMPLER(_ARG)
    for name in otel.trace_exporters:
        if name == "console":
            exporter: Any = ConsoleSpanExporter(out=sys.stderr)  # stdout carries the address
        else:
            exporter = _otlp_span_exporter(otel.traces_protocol)
        # OTEL_BSP_MAX_QUEUE_SIZE, _SCHEDULE_DELAY, _MAX_EXPORT_BATCH_SIZE, _EXPORT_TIMEOUT
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _otlp_span_exporter(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            from verifier.telemetry.otlp import FastOTLPSpanExporter

            return FastOTLPSpanExporter()
        from opentelemetry.exporter.otlp.proto.http import trace_exporter
    except ImportError as exc:
        raise ConfigError("OTEL_TRACES_EXPORTER", _OTLP_BROKEN_HINT.format(error=exc)) from exc
    return trace_exporter.OTLPSpanExporter()


def _otlp_metric_exporter(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc import metric_exporter
        else:
            from opentelemetry.exporter.otlp.proto.http import metric_exporter  # type: ignore[no-redef]
    except ImportError as exc:
        raise ConfigError("OTEL_METRICS_EXPORTER", _OTLP_BROKEN_HINT.format(error=exc)) from exc
    return metric_exporter.OTLPMetricExporter()


def _metric_readers(settings: Settings, otel: TelemetrySettings) -> list[Any]:
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )

    readers: list[Any] = []
    if settings.metrics_listen:
        readers.append(prometheus_reader())
    for name in otel.metric_exporters:
        if name == "console":
            exporter: Any = ConsoleMetricExporter(out=sys.stderr)
        else:
            exporter = _otlp_metric_exporter(otel.metrics_protocol)
        readers.append(PeriodicExportingMetricReader(exporter))  # OTEL_METRIC_EXPORT_INTERVAL
    return readers


def prometheus_reader() -> Any:
    """A Prometheus metric reader on a registry of its own (plus the process collector), so
    several instances in one process never share or collide in the global registry."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    reader = PrometheusMetricReader(registry=registry, scope_info_enabled=False)
    reader.dpop_registry = registry  # type: ignore[attr-defined]
    return reader


def start_metrics_endpoint(telemetry: Telemetry, address: str) -> str:
    """Serve ``GET /metrics`` (Prometheus text format) on ``address`` (host:port, port 0
    picks one) in a background thread; return the bound ``host:port``. Stopped by
    :meth:`Telemetry.shutdown`. Raises ``RuntimeError`` when the address cannot be bound.
    """
    from prometheus_client import start_http_server

    registry = telemetry.prometheus_registry
    if registry is None:
        raise RuntimeError("metrics endpoint requested but no Prometheus reader is configured")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        server, thread = start_http_server(int(port), addr=host, registry=registry)
    except OSError as exc:
        raise RuntimeError(f"cannot listen on {address} (DPOP_METRICS_LISTEN): {exc}") from exc

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    telemetry.on_shutdown(stop)
    bound_host = f"[{host}]" if ":" in host else host
    bound = f"{bound_host}:{server.server_address[1]}"
    _log.info("serving Prometheus metrics on http://%s/metrics", bound)
    return bound
