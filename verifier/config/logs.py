"""Logging settings: the service log's level and format, and the decision log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from verifier.config.values import (
    ConfigError,
    Parser,
    Section,
    parse_lower,
    parse_upper,
)

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
LOG_FORMATS = ("text", "json")
DECISION_LOG_MODES = ("all", "deny", "none")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class LogSettings(Section):
    """The service log and the decision log. Checks itself on construction."""

    log_level: str = "INFO"
    log_format: str = "text"
    decision_log: str = "all"
    decision_log_sample: float = 1.0

    PARSERS: ClassVar[Mapping[str, Parser]] = {
        "log_level": parse_upper,
        "log_format": parse_lower,
        "decision_log": parse_lower,
    }

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ConfigError("DPOP_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError("DPOP_LOG_FORMAT", f"must be one of {', '.join(LOG_FORMATS)}")
        if self.decision_log not in DECISION_LOG_MODES:
            raise ConfigError(
                "DPOP_DECISION_LOG", f"must be one of {', '.join(DECISION_LOG_MODES)}"
            )
        if not 0.0 <= self.decision_log_sample <= 1.0:
            raise ConfigError("DPOP_DECISION_LOG_SAMPLE", "must be between 0 and 1")
