"""What every front door does around the engine: decide, and deny as ``internal_error`` when
anything raises (fail closed); log a report-only route's would-be denial."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from verifier.domain.model import Decision, RequestFacts, internal_error
from verifier.domain.ports import DecisionRecord

_log = logging.getLogger("verifier.doors")


def decide(door: str, record: DecisionRecord, decision_of: Callable[[], Decision]) -> Decision:
    """``decision_of()``, or ``internal_error`` when it raises; recorded in ``record``.

    The log names the exception's type and frames only: its message could quote a token or a
    proof."""
    try:
        decision = decision_of()
    except Exception as exc:
        _log.error(
            "%s failed with %s; denied as internal_error\n%s",
            door,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        decision = internal_error()
    record.decision = decision
    return decision


def log_report_only(facts: RequestFacts, decision: Decision) -> None:
    """A warning for a would-be denial that a report-only route let through (method and URI
    bounded, the query left out)."""
    _log.warning(
        "report-only: would deny %s %s with %s (route %s)",
        facts.method[:16],
        facts.target_uri.partition("?")[0][:256],
        decision.reason.value,
        facts.route,
    )
