"""Log set-up: text or JSON service logs, and the decision log (always JSON, one line each).

Decision lines go to the ``verifier.decision`` logger, which has its own stderr handler and does
not propagate, so they stay one JSON object per line whatever ``DPOP_LOG_FORMAT`` is.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import IO, Any

from opentelemetry import trace

from verifier.telemetry.spans import current_span_context

DECISION_LOGGER = "verifier.decision"

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


_DECISION_RECORD_KEYS = _STANDARD_ATTRIBUTES | {"decision_fields"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, trace ids and extras.

    ``extra={"fields": {...}}`` merges those fields at the top level (the decision log uses it);
    other ``extra`` keys are added as they are. Exceptions are rendered as traceback frames
    only (``exception_type`` and ``traceback``): an exception's message may quote client input.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        decision = getattr(record, "decision_fields", None)
        if decision is not None:  # a decision line: its fields are complete (trace ids too)
            entry.update(decision)
            for key in record.__dict__.keys() - _DECISION_RECORD_KEYS:  # e.g. a filter's worker
                entry[key] = record.__dict__[key]
            return json.dumps(entry, default=str, separators=(",", ":"))
        span_context = current_span_context() or trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in vars(record).items():
            if key == "fields" and isinstance(value, dict):
                entry.update(value)
            elif key not in _STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception_type"] = record.exc_info[0].__name__
            entry["traceback"] = "".join(traceback.format_tb(record.exc_info[2]))
        return json.dumps(entry, default=str, separators=(",", ":"))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    level: str, log_format: str, *, decision_log: str = "all", stream: IO[str] | None = None
) -> None:
    """Set up the root logger (``text`` or ``json``) and the decision logger.

    Replaces any handlers already on the root logger. Decision lines are written at INFO (or
    ERROR for faults) whatever ``level`` is, unless ``decision_log`` is ``"none"``.
    """
    out = stream if stream is not None else sys.stderr
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(out)
    text = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(JsonFormatter() if log_format == "json" else text)
    root.addHandler(handler)
    root.setLevel(level)

    decisions = logging.getLogger(DECISION_LOGGER)
    for old in list(decisions.handlers):
        decisions.removeHandler(old)
    decisions.propagate = False
    decision_handler = logging.StreamHandler(out)
    decision_handler.setFormatter(JsonFormatter())
    decisions.addHandler(decision_handler)
    decisions.setLevel(logging.CRITICAL + 1 if decision_log == "none" else logging.INFO)
