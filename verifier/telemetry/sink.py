"""The :class:`Telemetry` object: one tracer, one meter, the instruments and the decision log.

Front doors (the ``Verify`` and ``Check`` servicers) open one :meth:`Telemetry.decision_scope`
per call; it continues the caller's trace, counts the call in flight, and when the call ends
records the decision on the server span, in the metrics and in the decision log. The ports
(replay store, token validator, key sources) and the engine's stages get child spans from
:mod:`verifier.telemetry.decorators`.

Nothing here ever sees a raw token, proof or secret: attributes come from the
:class:`~verifier.domain.model.Decision`, the verified token claims and the key thumbprint,
which is hashed (:func:`hash_jkt`) before it is recorded.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib.metadata
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from verifier.domain.model import Decision, RequestFacts, TokenClaims, internal_error
from verifier.domain.reasons import Reason
from verifier.telemetry.logs import DECISION_LOGGER, DecisionLineHandler, json_string, timestamps
from verifier.telemetry.spans import (
    LeanSpan,
    SpanRecorder,
    current,
    enter_call,
    leave_call,
)

INSTRUMENTATION_NAME = "dpop-verifier"

# Metric names (OpenTelemetry style; the Prometheus exporter turns the dots into underscores and
# adds the unit and ``_total`` suffixes, e.g. ``dpop_verifier_decisions_total``).
METRIC_DECISIONS = "dpop_verifier.decisions"
METRIC_DURATION = "dpop_verifier.verification.duration"
METRIC_IN_FLIGHT = "dpop_verifier.requests.in_flight"
METRIC_REPLAY_DURATION = "dpop_verifier.replay_store.duration"
METRIC_REPLAY_ERRORS = "dpop_verifier.replay_store.errors"
METRIC_KEY_REFRESHES = "dpop_verifier.key_source.refreshes"
METRIC_KEY_FAILURES = "dpop_verifier.key_source.failures"

# Attribute keys shared by spans, metrics and the decision log's field names.
ATTR_DECISION = "dpop.decision"
ATTR_REASON = "dpop.reason"
ATTR_RFC_ERROR = "dpop.rfc_error"
ATTR_HTTP_STATUS = "dpop.http_status"
ATTR_ENFORCED = "dpop.enforced"
ATTR_ALG = "dpop.proof.alg"
ATTR_JKT_HASH = "dpop.jkt_hash"
ATTR_ISSUER = "dpop.token.issuer"
ATTR_CLIENT_ID = "dpop.client_id"
ATTR_ROUTE = "http.route"
ATTR_METHOD = "http.request.method"
ATTR_RPC_SYSTEM = "rpc.system"
ATTR_RPC_SERVICE = "rpc.service"
ATTR_RPC_METHOD = "rpc.method"

MAX_ROUTE_LABELS = 200
"""Distinct ``http.route`` values on the decision counter; beyond them, :data:`OTHER_ROUTE`."""
OTHER_ROUTE = "other"

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
"""Histogram boundaries (seconds): a verification takes about a millisecond."""

_current_scope: contextvars.ContextVar[DecisionScope | None] = contextvars.ContextVar(
    "dpop_decision_scope", default=None
)
_log = logging.getLogger(__name__)


def service_version() -> str:
    """The installed package version (``service.version`` and the instrumentation version)."""
    try:
        return importlib.metadata.version("dpop-verifier")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def hash_jkt(jkt: str) -> str:
    """The form in which a key thumbprint is recorded: the first 16 hex digits of SHA-256(jkt).

    An operator who knows a client's ``jkt`` finds its requests with
    ``printf %s "$JKT" | sha256sum | cut -c1-16``. Recent thumbprints are remembered (clients
    reuse their key), so a repeat costs a dict lookup instead of a SHA-256.
    """
    if not jkt:
        return ""
    hashed = _jkt_hashes.get(jkt)
    if hashed is None:
        hashed = hashlib.sha256(jkt.encode("utf-8")).hexdigest()[:16]
        if len(_jkt_hashes) >= _JKT_HASHES_MAX:
            _jkt_hashes.clear()
        _jkt_hashes[jkt] = hashed
    return hashed


_JKT_HASHES_MAX = 4096
_jkt_hashes: dict[str, str] = {}


@dataclass(slots=True)
class DecisionScope:
    """What is known about one call while it runs; the front door sets ``facts`` and
    ``decision``, the instrumented ports add what they learn (token claims, proof key)."""

    rpc_method: str
    facts: RequestFacts | None = None
    decision: Decision | None = None
    claims: TokenClaims | None = None
    alg: str = ""
    jkt: str = ""
    jkt_hash: str = ""
    """``hash_jkt(jkt)``, computed once for the span and the log."""

    def hashed_jkt(self, jkt: str) -> str:
        """``hash_jkt(jkt)``, reusing the hash of the scope's own ``jkt``."""
        if not jkt:
            return ""
        if jkt != self.jkt:
            return hash_jkt(jkt)
        if not self.jkt_hash:
            self.jkt_hash = hash_jkt(jkt)
        return self.jkt_hash


def current_scope() -> DecisionScope | None:
    """The decision scope of the call being handled in this task, if any."""
    return _current_scope.get()


class Instruments:
    """The service's metric instruments, created once on ``meter``."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._lock = threading.Lock()
        self._decisions: dict[tuple[str, str, str, str], int] = {}
        """Decisions by (RPC method, decision, reason, route): counted here under a lock (0.2 µs
        instead of the SDK counter's 6 µs per add) and reported by an observable counter at
        collection time; exported exactly like a counter (``..._total`` in Prometheus). A
        report-only route's would-be denial counts as ``allow`` with its reason."""
        self._routes: set[str] = set()
        """Route label values seen; at most :data:`MAX_ROUTE_LABELS` (``Verify`` callers may
        name routes), the rest count as :data:`OTHER_ROUTE`."""
        meter.create_observable_counter(
            METRIC_DECISIONS,
            callbacks=[self._observe_decisions],
            unit="{decision}",
            description="Decisions by result and reason code",
        )
        self.duration = meter.create_histogram(
            METRIC_DURATION,
            unit="s",
            description="Time to decide one request, from the call's arrival to its answer",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self.in_flight: dict[str, int] = {}
        """Calls being decided right now, by RPC method; read by an observable instrument at
        collection time, so counting costs two locked dict updates per call."""
        meter.create_observable_up_down_counter(
            METRIC_IN_FLIGHT,
            callbacks=[self._observe_in_flight],
            unit="{request}",
            description="Calls being decided right now",
        )
        self.replay_duration = meter.create_histogram(
            METRIC_REPLAY_DURATION,
            unit="s",
            description="Replay-store first_use latency, by outcome",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self.replay_errors = meter.create_counter(
            METRIC_REPLAY_ERRORS,
            unit="{error}",
            description="Replay-store operations that failed (the request was denied)",
        )
        self.key_refreshes = meter.create_counter(
            METRIC_KEY_REFRESHES,
            unit="{refresh}",
            description="Fetches of an issuer's key document, by outcome",
        )
        self.key_failures = meter.create_counter(
            METRIC_KEY_FAILURES,
            unit="{failure}",
            description="Key-source failures: failed fetches and requests that found no keys",
        )

        self._duration_labels: dict[tuple[str, str], dict[str, str]] = {}

    def call_started(self, method: str) -> None:
        with self._lock:
            self.in_flight[method] = self.in_flight.get(method, 0) + 1

    def call_ended(
        self, method: str, verdict: str, reason: str, seconds: float, route: str = ""
    ) -> None:
        """Count the decision, leave the in-flight count and record the call's duration."""
        with self._lock:
            if route not in self._routes:
                if len(self._routes) < MAX_ROUTE_LABELS:
                    self._routes.add(route)
                else:
                    route = OTHER_ROUTE
            key = (method, verdict, reason, route)
            self.in_flight[method] -= 1
            self._decisions[key] = self._decisions.get(key, 0) + 1
        labels = self._duration_labels.get((method, verdict))
        if labels is None:
            labels = {ATTR_RPC_METHOD: method, ATTR_DECISION: verdict}
            self._duration_labels[(method, verdict)] = labels
        self.duration.record(seconds, labels)

    def _observe_in_flight(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            counts = list(self.in_flight.items())
        for method, count in counts:
            yield metrics.Observation(count, {ATTR_RPC_METHOD: method})

    def _observe_decisions(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            counts = list(self._decisions.items())
        for (method, verdict, reason, route), count in counts:
            yield metrics.Observation(
                count,
                {
                    ATTR_RPC_METHOD: method,
                    ATTR_DECISION: verdict,
                    ATTR_REASON: reason,
                    ATTR_ROUTE: route,
                },
            )


class DecisionLog:
    """Writes one JSON line per decision to the ``verifier.decision`` logger.

    ``mode``: ``all``, ``deny`` (denials and report-only would-be denials) or ``none``.
    ``sample``: the fraction of those lines kept; the choice follows the trace id when there is
    one (so a sampled trace and its log line agree). Faults (HTTP 5xx) are always written, at
    ERROR level; everything else at INFO.
    """

    def __init__(
        self, mode: str = "all", sample: float = 1.0, logger: logging.Logger | None = None
    ) -> None:
        self.mode = mode
        self.sample = sample
        self._logger = logger or logging.getLogger(DECISION_LOGGER)
        self._threshold = int(sample * (1 << 64))

    def _keep(self, decision: Decision, trace_id: int) -> bool:
        if decision.http_status >= 500:
            return True
        if self.mode == "none" or (self.mode == "deny" and decision.reason is Reason.OK):
            return False
        if self.sample >= 1.0:
            return True
        if trace_id:
            return (trace_id & 0xFFFF_FFFF_FFFF_FFFF) < self._threshold
        return random.random() < self.sample  # noqa: S311 - sampling, not security

    def write(
        self,
        scope: DecisionScope,
        decision: Decision,
        *,
        trace_id: int,
        span_id: int,
        seconds: float,
    ) -> None:
        level = logging.ERROR if decision.http_status >= 500 else logging.INFO
        logger = self._logger
        if not logger.isEnabledFor(level) or not self._keep(decision, trace_id):
            return
        claims = decision.claims or scope.claims
        facts = scope.facts
        trace_hex = format(trace_id, "032x") if trace_id else ""
        span_hex = format(span_id, "016x") if span_id else ""
        method, route = (facts.method, facts.route) if facts else ("", "")
        interaction_id = facts.interaction_id if facts else ""
        issuer, subject, client_id = (
            (claims.issuer, claims.subject, claims.client_id) if claims else ("", "", "")
        )
        alg = decision.alg or scope.alg
        jkt_hash = scope.hashed_jkt(decision.jkt or scope.jkt)
        latency_ms = round(seconds * 1000, 3)
        handlers = logger.handlers
        line_handler = handlers[0] if len(handlers) == 1 else None
        if (
            type(line_handler) is DecisionLineHandler
            and not line_handler.filters
            and not logger.filters
            and level >= line_handler.level
        ):
            # The common case, built directly: the same JSON JsonFormatter writes (below).
            line_handler.write_line(
                f'{{"timestamp":"{timestamps.format(time.time())}",'
                f'"level":"{logging.getLevelName(level)}","logger":{json_string(logger.name)},'
                f'"message":"decision","event":"decision","trace_id":"{trace_hex}",'
                f'"span_id":"{span_hex}","rpc":{json_string(scope.rpc_method)},'
                f'"decision":"{"allow" if decision.allow else "deny"}",'
                f'"reason":"{decision.reason.value}","rfc_error":"{decision.rfc_error.value}",'
                f'"http_status":{decision.http_status:d},'
                f'"enforced":{"true" if decision.enforced else "false"},'
                f'"method":{json_string(method)},"route":{json_string(route)},'
                f'"issuer":{json_string(issuer)},"subject":{json_string(subject)},'
                f'"client_id":{json_string(client_id)},"alg":{json_string(alg)},'
                f'"jkt_hash":"{jkt_hash}","latency_ms":{latency_ms!r}'
                + (
                    f',"fapi_interaction_id":{json_string(interaction_id)}'
                    if interaction_id
                    else ""
                )
            )
            return
        fields = {
            "event": "decision",
            "trace_id": trace_hex,
            "span_id": span_hex,
            "rpc": scope.rpc_method,
            "decision": "allow" if decision.allow else "deny",
            "reason": decision.reason.value,
            "rfc_error": decision.rfc_error.value,
            "http_status": decision.http_status,
            "enforced": decision.enforced,
            "method": method,
            "route": route,
            "issuer": issuer,
            "subject": subject,
            "client_id": client_id,
            "alg": alg,
            "jkt_hash": jkt_hash,
            "latency_ms": latency_ms,
        }
        if interaction_id:
            fields["fapi_interaction_id"] = interaction_id
        # makeRecord + handle: what Logger.log does, less the caller lookup (a stack walk) that
        # a decision line never shows. The fields are plain JSON values.
        record = logger.makeRecord(
            logger.name, level, __file__, 0, "decision", (), None,
            extra={"decision_fields": fields},
        )  # fmt: skip
        logger.handle(record)


def _carrier(metadata: Iterable[Any], fields: frozenset[str]) -> dict[str, str]:
    """The ``fields`` of gRPC invocation metadata (key/value pairs) as a text-map carrier;
    binary values skipped, the first of repeated keys kept."""
    carrier: dict[str, str] = {}
    for item in metadata:
        key, value = item[0], item[1]
        if isinstance(value, str) and isinstance(key, str):
            key = key.lower()
            if key in fields and key not in carrier:
                carrier[key] = value
    return carrier


_EMPTY_CONTEXT = otel_context.Context()


class _Call:
    """The context manager of :meth:`Telemetry.decision_scope`."""

    __slots__ = (
        "_facts",
        "_headers",
        "_metadata",
        "_parent",
        "_rpc",
        "_scope",
        "_scope_token",
        "_span",
        "_span_token",
        "_started",
        "_telemetry",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        rpc: str,
        metadata: Iterable[Any],
        headers: Mapping[str, str] | None,
        facts: RequestFacts | None,
    ) -> None:
        self._telemetry = telemetry
        self._rpc = rpc
        self._metadata = metadata
        self._headers = headers
        self._facts = facts

    def __enter__(self) -> DecisionScope:
        self._started = time.perf_counter()
        telemetry = self._telemetry
        rpc = self._rpc
        names = telemetry._rpc_names.get(rpc)
        if names is None:
            service, _, method = rpc.rpartition("/")
            names = telemetry._rpc_names[rpc] = (service, method)
        service, method = names
        self._parent = parent = telemetry._extract(self._metadata, self._headers)
        self._scope = scope = DecisionScope(rpc_method=method, facts=self._facts)
        telemetry.instruments.call_started(method)
        self._scope_token = _current_scope.set(scope)
        self._span: LeanSpan | SpanContext | None = None
        self._span_token: contextvars.Token[Any] | None = None
        recorder = telemetry._recorder
        if recorder is not None:
            try:
                self._span = recorder.start_call(
                    rpc,
                    parent,
                    SpanKind.SERVER,
                    {ATTR_RPC_SYSTEM: "grpc", ATTR_RPC_SERVICE: service, ATTR_RPC_METHOD: method},
                )
                self._span_token = enter_call(self._span)
            except BaseException:
                self._leave(0.0)
                raise
        return scope

    def __exit__(self, *exc_info: object) -> None:
        self._leave(time.perf_counter() - self._started)

    def _leave(self, seconds: float) -> None:
        if self._span_token is not None:
            leave_call(self._span_token)
        scope = self._scope
        decision = scope.decision if scope.decision is not None else internal_error()
        try:
            self._telemetry.instruments.call_ended(
                scope.rpc_method,
                "allow" if decision.allow else "deny",
                decision.reason.value,
                seconds,
                scope.facts.route if scope.facts is not None else "",
            )
            self._telemetry._finish(scope, decision, self._span, self._parent, seconds)
        except Exception:  # telemetry must never break an answer
            _log.exception("recording a decision failed")
        finally:
            _current_scope.reset(self._scope_token)


TRACE_HEADERS = ("traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid",
                 "x-b3-sampled", "x-b3-parentspanid", "x-b3-flags")  # fmt: skip
"""Trace-context headers of the W3C, B3 and baggage propagators (what Envoy forwards)."""


def trace_headers(headers: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The trace-context headers of an HTTP request (lower-case name -> every value received,
    as :func:`verifier.doors.extauthz_facts.request_headers` gives them), the first value of
    each, for :meth:`Telemetry.decision_scope`."""
    return {name: values[0] for name in TRACE_HEADERS if (values := headers.get(name))}


class Telemetry:
    """Tracer, meter, instruments and decision log of one service instance.

    Build it with :func:`verifier.app.telemetry.build_telemetry` (from the settings and the
    ``OTEL_*`` variables) or, in tests, directly with SDK providers. ``Telemetry()`` alone
    records nothing but still writes the decision log.
    """

    def __init__(
        self,
        *,
        tracer_provider: SdkTracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracing = tracer_provider is not None
        self.metering = meter_provider is not None
        self.tracer: trace.Tracer = (
            tracer_provider.get_tracer(INSTRUMENTATION_NAME, service_version())
            if tracer_provider is not None
            else trace.NoOpTracer()
        )
        meter = (
            meter_provider.get_meter(INSTRUMENTATION_NAME, service_version())
            if meter_provider is not None
            else metrics.NoOpMeter(INSTRUMENTATION_NAME)
        )
        self.instruments = Instruments(meter)
        self._recorder: SpanRecorder | None = (
            SpanRecorder(self.tracer, INSTRUMENTATION_NAME, service_version())
            if isinstance(self.tracer, SdkTracer)
            else None
        )
        self._rpc_names: dict[str, tuple[str, str]] = {}
        self._textmap: Any = None
        self._fields: frozenset[str] = frozenset()
        self.decision_log = decision_log if decision_log is not None else DecisionLog()
        self._closers: list[Any] = []
        self.prometheus_registry: Any = None
        """The ``prometheus_client`` registry the metrics endpoint serves, when configured."""

    @property
    def enabled(self) -> bool:
        """True when spans or metrics are recorded (the ports are then worth wrapping)."""
        return self.tracing or self.metering

    # --- the server span of one call -------------------------------------------------------

    def decision_scope(
        self,
        rpc: str,
        *,
        metadata: Iterable[Any] = (),
        headers: Mapping[str, str] | None = None,
        facts: RequestFacts | None = None,
    ) -> AbstractContextManager[DecisionScope]:
        """Observe one front-door call; set ``scope.decision`` before leaving.

        ``rpc`` is the full gRPC method (``"dpop.verifier.v1.VerifierService/Verify"``), also
        the span name. The caller's trace is continued from ``metadata`` (the call's gRPC
        invocation metadata, W3C ``traceparent``/``tracestate`` or whatever
        ``OTEL_PROPAGATORS`` selects), else from ``headers`` (for ``Check``: the HTTP request's
        headers inside the CheckRequest, where Envoy puts its trace context). A scope left
        without a decision (an exception escaped) is recorded as ``internal_error``.
        """
        return _Call(self, rpc, metadata, headers, facts)

    def _extract(self, metadata: Iterable[Any], headers: Mapping[str, str] | None) -> Any:
        """The caller's context from the call's metadata, else from ``headers``; only the
        fields the configured propagators read are looked at (none present: no extraction)."""
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:
            self._textmap, self._fields = textmap, frozenset(f.lower() for f in textmap.fields)
        fields = self._fields
        carrier = _carrier(metadata, fields)
        parent = propagate.extract(carrier) if carrier else _EMPTY_CONTEXT
        if headers and not trace.get_current_span(parent).get_span_context().is_valid:
            carrier = {k.lower(): v for k, v in headers.items() if k.lower() in fields}
            if carrier:
                parent = propagate.extract(carrier)
        return parent

    def _finish(
        self,
        scope: DecisionScope,
        decision: Decision,
        span: LeanSpan | SpanContext | None,
        parent: Any,
        seconds: float,
    ) -> None:
        span_id = 0
        if isinstance(span, LeanSpan):
            _add_decision_attributes(span._attributes, scope, decision)
            if decision.http_status >= 500:
                span.set_status(Status(StatusCode.ERROR, decision.reason.value))
            span.end()
            span_context = span.get_span_context()
            span_id = span_context.span_id
        elif span is not None:  # traced, not sampled: log the trace id without a span
            span_context = span
        else:  # not traced here: log the caller's trace id, if any
            span_context = trace.get_current_span(parent).get_span_context()
        self.decision_log.write(
            scope, decision, trace_id=span_context.trace_id, span_id=span_id, seconds=seconds
        )

    # --- child spans ------------------------------------------------------------------------

    def child_span(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        start_time: int | None = None,
        *,
        leaf: bool = False,
    ) -> AbstractContextManager[trace.Span]:
        """A child span of the current one, current itself while open (unless ``leaf``: a step
        that opens no spans of its own). Exceptions are never recorded with their message (it
        could quote client input); callers mark outcomes themselves. ``start_time`` (ns since
        the epoch) backdates the span's start.

        Inside a call it is a :class:`~verifier.telemetry.spans.LeanSpan` sharing the call's
        sampling decision (``INVALID_SPAN`` when the call is not sampled); outside any call
        (a key refresh in the background) an ordinary SDK span.
        """
        parent = current()
        if isinstance(parent, LeanSpan):
            assert self._recorder is not None
            return self._recorder.start_child(parent, name, kind, attributes, start_time, leaf)
        if parent is not None or not self.tracing:  # the call is not sampled, or no tracing
            return nullcontext(trace.INVALID_SPAN)
        return self._sdk_span(name, attributes, kind, start_time)

    @contextmanager
    def _sdk_span(
        self,
        name: str,
        attributes: Mapping[str, Any] | None,
        kind: SpanKind,
        start_time: int | None,
    ) -> Iterator[trace.Span]:
        current_span = trace.get_current_span()
        if current_span.get_span_context().is_valid and not current_span.is_recording():
            yield trace.INVALID_SPAN
            return
        with self.tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=attributes,
            start_time=start_time,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    # --- lifecycle ---------------------------------------------------------------------------

    def on_shutdown(self, closer: Any) -> None:
        """Call ``closer()`` from :meth:`shutdown` (e.g. to stop the metrics endpoint)."""
        self._closers.append(closer)

    def shutdown(self, timeout_millis: int = 5000) -> None:
        """Flush and stop the exporters and any endpoint; safe to call twice."""
        closers, self._closers = self._closers, []
        for closer in closers:
            closer()
        for provider in (self.tracer_provider, self.meter_provider):
            stop = getattr(provider, "shutdown", None)
            if stop is None:
                continue
            try:
                if provider is self.meter_provider:
                    stop(timeout_millis=timeout_millis)
                else:
                    stop()
            except Exception:
                _log.warning("telemetry exporter did not shut down cleanly", exc_info=True)


def _add_decision_attributes(
    attributes: dict[str, Any], scope: DecisionScope, decision: Decision
) -> None:
    """The decision's attributes, added to the server span's ``attributes``."""
    attributes[ATTR_DECISION] = "allow" if decision.allow else "deny"
    attributes[ATTR_REASON] = decision.reason.value
    attributes[ATTR_HTTP_STATUS] = decision.http_status
    if decision.rfc_error.value:
        attributes[ATTR_RFC_ERROR] = decision.rfc_error.value
    if not decision.enforced:
        attributes[ATTR_ENFORCED] = False
    alg = decision.alg or scope.alg
    if alg:
        attributes[ATTR_ALG] = alg
    jkt = decision.jkt or scope.jkt
    if jkt:
        attributes[ATTR_JKT_HASH] = scope.hashed_jkt(jkt)
    claims = decision.claims or scope.claims
    if claims is not None:
        if claims.issuer:
            attributes[ATTR_ISSUER] = claims.issuer
        if claims.client_id:
            attributes[ATTR_CLIENT_ID] = claims.client_id
    facts = scope.facts
    if facts is not None:
        if facts.route:
            attributes[ATTR_ROUTE] = facts.route
        if facts.method:
            attributes[ATTR_METHOD] = facts.method[:16]
