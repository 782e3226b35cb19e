"""Log set-up: text or JSON service logs, and the decision log (always JSON, one line each).

Decision lines go to the ``verifier.decision`` logger, which has its own stderr handler and does
not propagate, so they stay one JSON object per line whatever ``DPOP_LOG_FORMAT`` is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
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

    ``extra`` keys are added as they are; a decision record's ``decision_fields`` (the
    decision log's record path) are merged at the top level. Exceptions are rendered as
    traceback frames only (``exception_type`` and ``traceback``): an exception's message may
    quote client input.
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
            if key not in _STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception_type"] = record.exc_info[0].__name__
            entry["traceback"] = "".join(traceback.format_tb(record.exc_info[2]))
        return json.dumps(entry, default=str, separators=(",", ":"))


class DecisionLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The decision logger's handler: a stream handler that also takes whole pre-built lines.

    :class:`verifier.telemetry.sink.DecisionLog` builds each decision line itself (a handful of
    string joins instead of a ``LogRecord``, a dict and ``json.dumps``: on the request path
    that is the difference between ~15 and ~55 µs a line) and hands it to :meth:`write_line`
    whenever this handler is the logger's only one and nobody added filters; otherwise it logs
    a record, which :class:`JsonFormatter` renders to the same JSON. ``identity`` holds fields
    added to every line (``label_logs``: the worker slot and pid).
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        self.identity: dict[str, Any] = {}
        self._suffix = "}\n"

    def set_identity(self, fields: dict[str, Any]) -> None:
        """Fields added to every line from now on (plain JSON values)."""
        self.identity = dict(fields)
        extra = "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in self.identity.items())
        self._suffix = extra + "}\n"

    def write_line(self, head: str) -> None:
        """Write ``head`` (a JSON object without its closing brace) as one line."""
        line = head + self._suffix
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            try:
                self.stream.write(line)
                self.stream.flush()
            except Exception:  # like Handler.handleError: never raise to the caller
                if logging.raiseExceptions:
                    with contextlib.suppress(Exception):  # stderr may be what failed
                        sys.stderr.write("--- decision log write failed ---\n")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.identity and text.endswith("}"):
            return text[:-1] + self._suffix[:-2] + "}"
        return text


class _Timestamps:
    """``datetime.isoformat(timespec="milliseconds")`` of UTC times, the date and time of day
    formatted once per second."""

    def __init__(self) -> None:
        self._last: tuple[int, str] = (-1, "")  # replaced whole: threads read it atomically

    def format(self, now: float) -> str:
        second, ms = divmod(int(now * 1000), 1000)
        last_second, prefix = self._last
        if second != last_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._last = (second, prefix)
        return f"{prefix}.{ms:03d}+00:00"


timestamps = _Timestamps()
json_string = encode_basestring_ascii
"""A str as a JSON string literal (quotes and escapes, ASCII only: what ``json.dumps`` writes)."""


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
    decisions.addHandler(DecisionLineHandler(out))
    decisions.setLevel(logging.CRITICAL + 1 if decision_log == "none" else logging.INFO)
