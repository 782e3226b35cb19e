"""Observability around the engine: OpenTelemetry traces and metrics, the Prometheus endpoint,
and the JSON decision log. The engine never imports this package; the composition root wraps
the ports (:mod:`verifier.telemetry.decorators`) and the front doors open one
:meth:`Telemetry.decision_scope` per call.
"""

from verifier.telemetry.decorators import (
    EngineHooks,
    TracedKeySource,
    TracedReplayStore,
    TracedTokenValidator,
    traced_fetcher,
)
from verifier.telemetry.sink import (
    DecisionLog,
    DecisionScope,
    Telemetry,
    current_scope,
    hash_jkt,
    trace_headers,
)

__all__ = [
    "DecisionLog",
    "DecisionScope",
    "EngineHooks",
    "Telemetry",
    "TracedKeySource",
    "TracedReplayStore",
    "TracedTokenValidator",
    "current_scope",
    "hash_jkt",
    "trace_headers",
    "traced_fetcher",
]
