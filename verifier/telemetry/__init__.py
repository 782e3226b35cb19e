"""Observability around the engine: OpenTelemetry traces and metrics, the Prometheus endpoint,
and the JSON decision log. The engine never imports this package; the composition root wraps
the ports (:mod:`verifier.telemetry.ports`) and the front doors open one
:meth:`Telemetry.decision_scope` per call.
"""

from verifier.telemetry.core import (
    DecisionLog,
    DecisionScope,
    Telemetry,
    current_scope,
    hash_jkt,
    trace_headers,
)
from verifier.telemetry.ports import (
    EngineHooks,
    TracedKeySource,
    TracedReplayStore,
    TracedTokenValidator,
    traced_fetcher,
)
from verifier.telemetry.settings import TelemetrySettings, telemetry_settings

__all__ = [
    "DecisionLog",
    "DecisionScope",
    "EngineHooks",
    "Telemetry",
    "TelemetrySettings",
    "TracedKeySource",
    "TracedReplayStore",
    "TracedTokenValidator",
    "current_scope",
    "hash_jkt",
    "telemetry_settings",
    "trace_headers",
    "traced_fetcher",
]
