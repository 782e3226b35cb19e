"""Our stand-ins for library code against the library, in one run: what each one saves.

    .venv/bin/python bench/bench_standins.py [--n 20000] [--rounds 3]

The service keeps a few pieces of its own where a well-kept library does the same job; each
must pay for itself here, measured in the same run as the library it stands in for:

* ``spans``: a child span inside a call (``Telemetry.child_span``: a
  :class:`~verifier.telemetry.spans.LeanSpan`) against the SDK's
  ``Tracer.start_as_current_span``, same attributes, same span processor;
* ``OTLP encoder``: :class:`~verifier.telemetry.otlp.SpanEncoder` against the OTLP exporter's
  ``encode_spans``, a batch of 512 spans, cost per span;
* ``decision counter``: counting a decision in a locked dict that an observable counter reports
  at collection (``verifier.telemetry.sink.Instruments``) against an SDK counter's ``add``, one
  reader.

Measured the same way and removed, since they saved (almost) nothing: histogram batching (a
queue recorded into the SDK histogram in batches: 8.6 vs 8.5 µs per measurement) and a span
batch processor of our own (0.42-0.45 vs 0.74-0.75 µs per span against the SDK's
``BatchSpanProcessor``: about 1.3 µs of a 300-400 µs call).

Figures are this process's CPU time per operation (``time.process_time``), alternating the two
sides for ``--rounds`` rounds, the best round of each (interference only slows a round). The
replay client (the lean RESP client against redis-py with hiredis) is measured against a real
redis-server by ``bench/bench_replay_cpu.py``; ``bench/run.py`` prints both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from verifier.domain.model import Decision
from verifier.domain.reasons import Reason, RfcError
from verifier.telemetry import DecisionLog, Telemetry
from verifier.telemetry.otlp import SpanEncoder
from verifier.telemetry.sink import Instruments

ATTRIBUTES = {"dpop.replay.store": "redis", "dpop.replay.outcome": "first_use"}
ALLOW = Decision(allow=True, reason=Reason.OK, message="", rfc_error=RfcError.NONE, http_status=200)
BATCH = 512


@dataclass(frozen=True)
class Pair:
    """One stand-in and its library counterpart: CPU µs per operation of each."""

    name: str
    ours_us: float
    library_us: float

    @property
    def saving(self) -> float:
        """How many times cheaper ours is (below 1: the library is cheaper)."""
        return self.library_us / self.ours_us if self.ours_us > 0 else 0.0


class Dropping(SpanExporter):
    """Counts spans and drops them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _cpu_us(operation: Callable[[], None], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        operation()
    return (time.process_time() - started) / n * 1e6


def _best_of(
    rounds: int, ours: Callable[[], float], library: Callable[[], float]
) -> tuple[float, float]:
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(ours())
        theirs.append(library())
    return min(mine), min(theirs)


def _traced() -> tuple[Telemetry, TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return Telemetry(tracer_provider=provider, decision_log=DecisionLog("none")), provider


def spans(n: int, rounds: int) -> Pair:
    telemetry, provider = _traced()
    tracer = provider.get_tracer("bench")

    def lean() -> float:
        with telemetry.decision_scope("bench/Call") as scope:
            cost = _cpu_us(lambda: _lean_child(telemetry), n)
            scope.decision = ALLOW
        return cost

    def sdk() -> float:
        def one() -> None:
            with tracer.start_as_current_span("dpop.replay.first_use", attributes=ATTRIBUTES):
                pass

        with tracer.start_as_current_span("bench/Call"):
            return _cpu_us(one, n)

    ours, library = _best_of(rounds, lean, sdk)
    provider.shutdown()
    return Pair("spans (child span, start to end)", ours, library)


def _lean_child(telemetry: Telemetry) -> None:
    with telemetry.child_span("dpop.replay.first_use", ATTRIBUTES, leaf=True):
        pass


def sample_spans(count: int) -> list[ReadableSpan]:
    """``count`` finished spans as a call records them (lean spans, sampled)."""
    collected: list[ReadableSpan] = []

    class Collect(SpanExporter):
        def export(self, batch: Sequence[ReadableSpan]) -> SpanExportResult:
            collected.extend(batch)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Collect()))
    telemetry = Telemetry(tracer_provider=provider, decision_log=DecisionLog("none"))
    while len(collected) < count:
        with telemetry.decision_scope("bench/Call") as scope:
            for _ in range(4):
                _lean_child(telemetry)
            scope.decision = ALLOW
        provider.force_flush()
    provider.shutdown()
    return collected[:count]


def encoder(n: int, rounds: int) -> Pair:
    batch = sample_spans(BATCH)
    own = SpanEncoder()
    batches = max(1, n // BATCH)

    def ours() -> float:
        return _cpu_us(lambda: own.encode(batch), batches) / BATCH

    def library() -> float:
        return _cpu_us(lambda: encode_spans(batch).SerializeToString(), batches) / BATCH

    mine, theirs = _best_of(rounds, ours, library)
    return Pair("OTLP encoder (per span, to bytes)", mine, theirs)


def decision_counter(n: int, rounds: int) -> Pair:
    """Counting a decision: the service's locked dict read by an observable counter at
    collection (``Instruments.call_ended``'s count) against an SDK counter's ``add``."""
    attributes = {"rpc.method": "Check", "dpop.decision": "allow", "dpop.reason": "ok"}

    def ours() -> float:
        reader = InMemoryMetricReader()
        instruments = Instruments(MeterProvider(metric_readers=[reader]).get_meter("bench"))
        lock, counts = instruments._lock, instruments._decisions
        key = ("Check", "allow", "ok", "default")

        def count() -> None:
            with lock:
                counts[key] = counts.get(key, 0) + 1

        cost = _cpu_us(count, n)
        reader.get_metrics_data()
        return cost

    def library() -> float:
        reader = InMemoryMetricReader()
        counter = MeterProvider(metric_readers=[reader]).get_meter("bench").create_counter("c")
        cost = _cpu_us(lambda: counter.add(1, attributes), n)
        reader.get_metrics_data()
        return cost

    mine, theirs = _best_of(rounds, ours, library)
    return Pair("decision counter (one add)", mine, theirs)


def measure_all(n: int, rounds: int) -> list[Pair]:
    # Room for every span measured: both batch processors drop spans when their queue is full,
    # which would make on_end cheaper than it is.
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max(2048, 2 * n))
    return [
        spans(n, rounds),
        encoder(n, rounds),
        decision_counter(n, rounds),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'stand-in':40} {'ours µs':>9} {'library µs':>11} {'saving':>8}")
    for pair in measure_all(args.n, args.rounds):
        print(f"{pair.name:40} {pair.ours_us:9.2f} {pair.library_us:11.2f} {pair.saving:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
