"""Lean spans: the service's own spans, recorded straight into the SDK's span processors.

The OpenTelemetry SDK's ``Tracer.start_span`` + ``Span.end`` costs about 14 µs per span on this
service's hardware (locks, bounded attribute maps, the sampler, a copy into a ``ReadableSpan``
at the end), and attaching it as the current span another 3-6 µs. With a server span and four
child spans per call that was more than the verification itself. A :class:`LeanSpan` costs
a few µs: it is its own ``ReadableSpan`` (attributes a plain dict, no locks, no copy at the
end) and its end hands it to the configured span processors (batch processor, exporters),
which receive what they would from the SDK.

What stays the SDK's:

* the **sampler** decides once per call, for the server span, with the caller's context (so
  ``parentbased_*``, ``traceidratio``, ``always_*`` behave as configured); the call's child
  spans share that decision, which is what every built-in sampler would decide for them (a
  sampled local parent, or the same trace id);
* the **id generator**, the **resource**, the **span processors** and exporters, and the span
  attribute limits (``OTEL_SPAN_ATTRIBUTE_*_LIMIT``) when they are set.

What differs: the current span is tracked in this module's context variable, not in the
OpenTelemetry context (nothing in the service reads that; the JSON log formatter reads this
one), and span processors' ``on_start`` is not called (the batch and simple processors do
nothing there).
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision as SamplingDecision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)

_current: contextvars.ContextVar[LeanSpan | SpanContext | None] = contextvars.ContextVar(
    "dpop_current_span", default=None
)
"""The current call's innermost open span; a bare :class:`SpanContext` when the call is traced
by its caller but not sampled here (children are then skipped); ``None`` outside a call."""


def current_span_context() -> SpanContext | None:
    """The span context of the innermost open span of the call being handled, if any."""
    current = _current.get()
    if isinstance(current, LeanSpan):
        return current._ctx
    return current


def current_span() -> trace.Span:
    """The innermost recording span of the call being handled, else ``INVALID_SPAN``."""
    current = _current.get()
    return current if isinstance(current, LeanSpan) else trace.INVALID_SPAN


class LeanSpan(trace.Span, ReadableSpan):
    """A recording span that is its own ``ReadableSpan`` (as the SDK's ``Span`` is): its end
    hands it to the span processors. Used as a context manager it is the current span while
    open (unless it is a leaf) and ends on exit. Not changed after its end."""

    def __init__(
        self,
        recorder: SpanRecorder,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
        leaf: bool = False,
    ) -> None:
        # ReadableSpan's fields (its properties read them), set without its __init__.
        self._name = name
        self._context = context
        self._ctx = context  # the same, typed not-None
        self._parent = parent
        self._kind = kind
        self._attributes: Any = attributes
        self._start_time: int | None = start_time
        self._end_time: int | None = None
        self._status = _UNSET
        self._events: Any = ()
        self._links = ()
        self._resource = recorder.resource
        self._instrumentation_scope = recorder.scope
        self._instrumentation_info = None
        self._recorder = recorder
        self._leaf = leaf
        self._token: contextvars.Token[Any] | None = None

    def get_span_context(self) -> SpanContext:
        return self._ctx

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._end_time is None:
            self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._end_time is None:
            self._attributes.update(attributes)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is None:
            self._status = status if isinstance(status, Status) else Status(status, description)

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if self._end_time is None:
            self._events = (*self._events, Event(name, attributes, timestamp))

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Not recorded: an exception's message could quote client input."""

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is None:
            self._recorder.finish(self, time.time_ns() if end_time is None else end_time)

    def __enter__(self) -> LeanSpan:
        if not self._leaf:
            self._token = _current.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
        self.end()


class SpanRecorder:
    """Starts and ends :class:`LeanSpan` objects for one SDK tracer."""

    def __init__(self, tracer: SdkTracer, scope_name: str, scope_version: str) -> None:
        self._sampler = tracer.sampler
        self._processor = tracer.span_processor
        self.resource = tracer.resource
        self._ids = tracer.id_generator
        self._span_id = (
            _random_span_id
            if type(tracer.id_generator) is RandomIdGenerator
            else tracer.id_generator.generate_span_id
        )
        self._random_ids = tracer.id_generator.is_trace_id_random()
        self.scope = InstrumentationScope(scope_name, scope_version)
        limits = SpanLimits()  # the same OTEL_SPAN_* variables the SDK's provider reads
        self._limits = (
            limits
            if limits.max_span_attribute_length is not None
            or (limits.max_span_attributes is not None and limits.max_span_attributes < 64)
            else None
        )

    def start_call(
        self,
        name: str,
        parent: otel_context.Context,
        kind: SpanKind,
        attributes: dict[str, Any],
    ) -> LeanSpan | SpanContext:
        """The span of one call, continuing ``parent`` (the caller's extracted context): a
        :class:`LeanSpan` when the sampler records it, else its non-recording context."""
        parent_context: SpanContext | None = trace.get_current_span(parent).get_span_context()
        if parent_context is not None and parent_context.is_valid:
            trace_id = parent_context.trace_id
            random_id = parent_context.trace_flags.random_trace_id
        else:
            parent_context = None
            trace_id = self._ids.generate_trace_id()
            random_id = self._random_ids
        result = self._sampler.should_sample(parent, trace_id, name, kind, attributes, ())
        sampled = result.decision is SamplingDecision.RECORD_AND_SAMPLE
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        if random_id:
            flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
        context = SpanContext(trace_id, self._span_id(), False, flags, result.trace_state)
        if not sampled:  # (RECORD_ONLY spans would never reach an exporter)
            return context
        if result.attributes:
            attributes = {**result.attributes, **attributes}
        return LeanSpan(self, name, context, parent_context, kind, attributes, time.time_ns())

    def start_child(
        self,
        parent: LeanSpan,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any] | None,
        start_time: int | None = None,
        leaf: bool = False,
    ) -> LeanSpan:
        """A child of ``parent``, sharing its sampling decision."""
        pc = parent._ctx
        context = SpanContext(pc.trace_id, self._span_id(), False, pc.trace_flags, pc.trace_state)
        return LeanSpan(
            self,
            name,
            context,
            pc,
            kind,
            dict(attributes) if attributes else {},
            time.time_ns() if start_time is None else start_time,
            leaf,
        )

    def finish(self, span: LeanSpan, end_time: int) -> None:
        span._end_time = end_time
        limits = self._limits
        if limits is not None:
            span._attributes = BoundedAttributes(
                limits.max_span_attributes,
                span._attributes,
                immutable=True,
                max_value_len=limits.max_span_attribute_length,
            )
        self._processor.on_end(span)


def _random_span_id() -> int:
    """What the SDK's ``RandomIdGenerator`` does, without its method call overhead."""
    span_id = _getrandbits(64)
    while span_id == 0:  # pragma: no cover - one chance in 2**64
        span_id = _getrandbits(64)
    return span_id


_getrandbits = random.getrandbits


def enter_call(span: LeanSpan | SpanContext | None) -> contextvars.Token[Any]:
    """Make ``span`` the current call's span (``None``: not traced)."""
    return _current.set(span)


def leave_call(token: contextvars.Token[Any]) -> None:
    _current.reset(token)


def current() -> LeanSpan | SpanContext | None:
    """The raw value: the innermost open span, the non-recording context, or ``None``."""
    return _current.get()
