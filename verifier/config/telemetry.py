"""Which telemetry is on, read once at start-up from the standard ``OTEL_*`` variables.

Tracing and OTLP metrics are **off by default**, unlike the OpenTelemetry SDK's own default:

* traces are exported when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``),
  or when it is unset and an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``);
* metrics likewise (``OTEL_METRICS_EXPORTER``, ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``); the
  Prometheus endpoint is separate (``DPOP_METRICS_LISTEN``);
* ``OTEL_SDK_DISABLED=true`` turns all of it off.

The exporters, the sampler and the batch processor read their own standard variables
(endpoint, headers, timeout, ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*``,
``OTEL_METRIC_EXPORT_INTERVAL``); this module only validates the ones that pick what runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from verifier.config import ConfigError

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("grpc", "http/protobuf")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_PROTOCOL = "grpc"


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """The exporters to run. Empty tuples: that signal is not exported."""

    trace_exporters: tuple[str, ...] = ()
    metric_exporters: tuple[str, ...] = ()
    traces_protocol: str = DEFAULT_PROTOCOL
    metrics_protocol: str = DEFAULT_PROTOCOL

    @property
    def tracing(self) -> bool:
        return bool(self.trace_exporters)


def telemetry_settings(environ: Mapping[str, str] | None = None) -> TelemetrySettings:
    """Read and validate the ``OTEL_*`` variables; raise :class:`ConfigError` naming the bad one."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(name, "").strip()

    disabled = get("OTEL_SDK_DISABLED").lower()
    if disabled not in ("", "true", "false"):
        raise ConfigError("OTEL_SDK_DISABLED", f"must be true or false, got {disabled!r}")
    sampler = get("OTEL_TRACES_SAMPLER").lower()
    if sampler and sampler not in SAMPLERS:
        raise ConfigError("OTEL_TRACES_SAMPLER", f"must be one of {', '.join(SAMPLERS)}")
    if sampler.endswith("traceidratio") and get("OTEL_TRACES_SAMPLER_ARG"):
        _check_ratio("OTEL_TRACES_SAMPLER_ARG", get("OTEL_TRACES_SAMPLER_ARG"))
    if disabled == "true":
        return TelemetrySettings()

    general_endpoint = bool(get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    traces = _exporters(
        "OTEL_TRACES_EXPORTER",
        get("OTEL_TRACES_EXPORTER"),
        general_endpoint or bool(get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
    )
    metrics = _exporters(
        "OTEL_METRICS_EXPORTER",
        get("OTEL_METRICS_EXPORTER"),
        general_endpoint or bool(get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")),
    )
    general_protocol = _protocol("OTEL_EXPORTER_OTLP_PROTOCOL", get("OTEL_EXPORTER_OTLP_PROTOCOL"))
    return TelemetrySettings(
        trace_exporters=traces,
        metric_exporters=metrics,
        traces_protocol=_protocol(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            general_protocol,
        ),
        metrics_protocol=_protocol(
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"),
            general_protocol,
        ),
    )


def _exporters(setting: str, value: str, endpoint_set: bool) -> tuple[str, ...]:
    if not value:
        return ("otlp",) if endpoint_set else ()
    names = tuple(dict.fromkeys(n.strip().lower() for n in value.split(",") if n.strip()))
    for name in names:
        if name == "prometheus":
            raise ConfigError(setting, "for Prometheus scraping set DPOP_METRICS_LISTEN instead")
        if name not in EXPORTERS:
            raise ConfigError(setting, f"unknown exporter {name!r} (use {', '.join(EXPORTERS)})")
    if "none" in names:
        if len(names) > 1:
            raise ConfigError(setting, "'none' cannot be combined with other exporters")
        return ()
    return names


def _protocol(setting: str, value: str, default: str = DEFAULT_PROTOCOL) -> str:
    if not value:
        return default
    if value not in PROTOCOLS:
        raise ConfigError(setting, f"must be one of {', '.join(PROTOCOLS)}, got {value!r}")
    return value


def _check_ratio(setting: str, value: str) -> None:
    try:
        ratio = float(value)
    except ValueError:
        raise ConfigError(setting, f"must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(setting, f"must be between 0 and 1, got {value!r}")
