"""Decisions are counted by route (``http.route``, the dashboard's deny rate per route), with a
bound on distinct routes: a ``Verify`` caller may name its own."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from verifier.telemetry.sink import (
    MAX_ROUTE_LABELS,
    METRIC_DECISIONS,
    OTHER_ROUTE,
    Instruments,
)


def _decisions(reader: InMemoryMetricReader) -> dict[tuple[str, str, str], int]:
    data: Any = reader.get_metrics_data()
    counts: dict[tuple[str, str, str], int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == METRIC_DECISIONS:
                    for point in metric.data.data_points:
                        a = point.attributes
                        key = (a["http.route"], a["dpop.decision"], a["dpop.reason"])
                        counts[key] = counts.get(key, 0) + point.value
    return counts


def test_decisions_are_counted_by_route_and_report_only_would_denials_as_allow() -> None:
    reader = InMemoryMetricReader()
    instruments = Instruments(MeterProvider(metric_readers=[reader]).get_meter("test"))
    for route, verdict, reason in [
        ("default", "allow", "ok"),
        ("default", "deny", "replayed"),
        ("beta", "allow", "bearer_not_allowed"),  # report-only: allowed, with its reason
        ("beta", "allow", "bearer_not_allowed"),
    ]:
        instruments.call_started("Check")
        instruments.call_ended("Check", verdict, reason, 0.001, route)
    assert _decisions(reader) == {
        ("default", "allow", "ok"): 1,
        ("default", "deny", "replayed"): 1,
        ("beta", "allow", "bearer_not_allowed"): 2,
    }


def test_routes_beyond_the_bound_count_as_other() -> None:
    reader = InMemoryMetricReader()
    instruments = Instruments(MeterProvider(metric_readers=[reader]).get_meter("test"))
    for i in range(MAX_ROUTE_LABELS + 50):
        instruments.call_started("Verify")
        instruments.call_ended("Verify", "allow", "ok", 0.001, f"caller-route-{i}")
    instruments.call_started("Verify")
    instruments.call_ended("Verify", "allow", "ok", 0.001, "caller-route-0")  # known: kept
    counts = _decisions(reader)
    routes = {route for route, _, _ in counts}
    assert len(routes) == MAX_ROUTE_LABELS + 1
    assert counts[(OTHER_ROUTE, "allow", "ok")] == 50
    assert counts[("caller-route-0", "allow", "ok")] == 2
