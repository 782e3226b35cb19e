"""``dpop-verifier rollout``: from the decision log, what each route refuses, or would refuse.

A route in ``report-only`` allows every request and logs the denial it would have made
(``"enforced": false``). Before it moves to ``require``, a team needs to know how many requests
that would refuse, why, and whose: this module reads decision lines (JSON, as the service writes
them to stderr; other lines are skipped) and tallies, per route, the refusals by reason and by
client (``client_id`` and the hashed key thumbprint ``jkt_hash``). Routes that enforce are
tallied the same way, from their real denials.

:func:`summarize` is pure (lines in, :class:`Report` out); :func:`format_text` and
:meth:`Report.to_json` present it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_CHARS = 65536
"""Longer lines are skipped (a decision line is well under 2 KiB)."""

UNKNOWN = "(unknown)"
"""Shown for a client the service could not identify (refused before the token was read)."""


@dataclass(slots=True)
class ClientTally:
    """One client (``client_id`` + ``jkt_hash``) on one route."""

    client_id: str
    jkt_hash: str
    requests: int = 0
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class RouteTally:
    """Every decision logged for one route."""

    route: str
    requests: int = 0
    refused: int = 0
    would_refuse: int = 0
    """Refusals a report-only route logged but did not enforce."""
    enforced_refusals: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    clients: dict[tuple[str, str], ClientTally] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """``report-only`` when it logged a would-be denial, ``enforcing`` when it denied, else
        ``-`` (nothing refused: the log cannot tell)."""
        if self.would_refuse:
            return "report-only"
        return "enforcing" if self.enforced_refusals else "-"

    @property
    def refused_rate(self) -> float:
        return self.refused / self.requests if self.requests else 0.0

    def refused_clients(self) -> list[ClientTally]:
        """The clients with at least one refusal, most refused first."""
        found = [c for c in self.clients.values() if c.refused]
        return sorted(found, key=lambda c: (-c.refused, c.client_id, c.jkt_hash))


@dataclass(slots=True)
class Report:
    """The tallies of one or more decision logs."""

    routes: dict[str, RouteTally] = field(default_factory=dict)
    decisions: int = 0
    skipped_lines: int = 0
    """Lines that were not decision lines (other log lines, truncated or foreign JSON)."""

    @property
    def allowed_seen(self) -> bool:
        """False when no request was allowed without objection: the log then holds denials
        only (``DPOP_DECISION_LOG=deny``) and its rates mean nothing."""
        return any(r.requests > r.refused for r in self.routes.values())

    def ordered_routes(self) -> list[RouteTally]:
        """Report-only routes first (the roll-out view), then by name."""
        return sorted(self.routes.values(), key=lambda r: (r.mode != "report-only", r.route))

    def to_json(self, *, top: int | None = None) -> dict[str, Any]:
        """The report as plain JSON values; ``top`` limits the clients listed per route."""
        return {
            "decisions": self.decisions,
            "skipped_lines": self.skipped_lines,
            "rates_meaningful": self.allowed_seen,
            "routes": [_route_json(r, top) for r in self.ordered_routes()],
        }


def _route_json(route: RouteTally, top: int | None) -> dict[str, Any]:
    clients = route.refused_clients()[:top]
    return {
        "route": route.route,
        "mode": route.mode,
        "requests": route.requests,
        "refused": route.refused,
        "refused_rate": round(route.refused_rate, 6),
        "reasons": [
            {"reason": reason, "count": count, "rate": round(count / route.requests, 6)}
            for reason, count in route.reasons.most_common()
        ],
        "clients": [
            {
                "client_id": c.client_id,
                "jkt_hash": c.jkt_hash,
                "requests": c.requests,
                "refused": c.refused,
                "reasons": dict(c.reasons.most_common()),
            }
            for c in clients
        ],
    }


def decision_fields(line: str) -> dict[str, Any] | None:
    """The fields of a decision line, or None for any other line. A prefix before the JSON
    object (``kubectl logs --prefix``, a timestamp) is ignored."""
    if len(line) > MAX_LINE_CHARS:
        return None
    start = line.find("{")
    if start < 0:
        return None
    try:
        fields = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(fields, dict) or fields.get("event") != "decision":
        return None
    if not isinstance(fields.get("reason"), str) or fields.get("decision") not in ("allow", "deny"):
        return None
    return fields


def _text(fields: dict[str, Any], key: str) -> str:
    value = fields.get(key)
    return value if isinstance(value, str) else ""


def summarize(lines: Iterable[str], *, routes: Iterable[str] = ()) -> Report:
    """Tally the decision lines among ``lines``; only the ``routes`` named, when any are."""
    wanted = frozenset(routes)
    report = Report()
    for line in lines:
        fields = decision_fields(line)
        if fields is None:
            if line.strip():
                report.skipped_lines += 1
            continue
        name = _text(fields, "route") or "default"
        if wanted and name not in wanted:
            continue
        report.decisions += 1
        tally = report.routes.get(name)
        if tally is None:
            tally = report.routes[name] = RouteTally(name)
        _count(tally, fields)
    return report


def _count(tally: RouteTally, fields: dict[str, Any]) -> None:
    reason = fields["reason"]
    enforced = fields.get("enforced") is not False
    refused = fields["decision"] == "deny" or not enforced
    client_key = (_text(fields, "client_id") or UNKNOWN, _text(fields, "jkt_hash") or "-")
    client = tally.clients.get(client_key)
    if client is None:
        client = tally.clients[client_key] = ClientTally(*client_key)
    tally.requests += 1
    client.requests += 1
    if not refused:
        return
    tally.refused += 1
    tally.reasons[reason] += 1
    client.refused += 1
    client.reasons[reason] += 1
    if enforced:
        tally.enforced_refusals += 1
    else:
        tally.would_refuse += 1


def format_text(report: Report, *, top: int | None = 10) -> str:
    """The report as the table ``dpop-verifier rollout`` prints."""
    out = [f"{report.decisions:,} decisions read; {report.skipped_lines:,} other lines skipped"]
    if report.decisions and not report.allowed_seen:
        out.append(
            "note: no request in this log was allowed; with DPOP_DECISION_LOG=deny only "
            "refusals are logged, so the rates below are not rates of all traffic"
        )
    for route in report.ordered_routes():
        verb = "would refuse" if route.mode == "report-only" else "refused"
        out += [
            "",
            f"route {route.route} ({route.mode}): {_requests(route.requests)}, {verb} "
            f"{route.refused:,} ({route.refused_rate:.2%})",
        ]
        if not route.refused:
            continue
        out.append(f"  {'reason':<34} {'count':>8} {'rate':>8}")
        for reason, count in route.reasons.most_common():
            out.append(f"  {reason:<34} {count:>8,} {count / route.requests:>8.2%}")
        clients = route.refused_clients()
        shown = clients[:top]
        who = "that would be refused" if route.mode == "report-only" else "refused"
        out.append(f"  clients {who}:")
        out.append(f"    {'client_id':<24} {'jkt_hash':<16} {'refused':>8} {'of':>8}  reasons")
        for c in shown:
            reasons = ", ".join(f"{r} {n}" for r, n in c.reasons.most_common())
            out.append(
                f"    {c.client_id[:24]:<24} {c.jkt_hash:<16} {c.refused:>8,} {c.requests:>8,}  "
                f"{reasons}"
            )
        if len(clients) > len(shown):
            out.append(f"    ... and {len(clients) - len(shown):,} more (--top)")
    return "\n".join(out)


def _requests(count: int) -> str:
    return f"{count:,} request" + ("" if count == 1 else "s")
