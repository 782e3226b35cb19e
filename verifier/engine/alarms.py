"""Rate-limited alarms: a recurring problem is logged loudly, but not once per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

FAIL_OPEN_ALARM = (
    "REPLAY STORE UNAVAILABLE and DPOP_REPLAY_FAIL_OPEN is set: proof(s) ACCEPTED WITHOUT "
    "REPLAY PROTECTION"
)


class ThrottledAlarm:
    """Logs ``message`` at ``level`` at most once per ``interval_s`` seconds.

    Each line carries how many occurrences it stands for (those suppressed since the previous
    line, plus this one) and the latest ``detail``. The first occurrence is always logged.
    Not thread-safe: meant for one asyncio event loop.
    """

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        interval_s: float = 10.0,
        level: int = logging.ERROR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._message = message
        self._interval_s = interval_s
        self._level = level
        self._clock = clock
        self._next_at = float("-inf")
        self._pending = 0

    def fire(self, detail: str = "") -> None:
        """Record one occurrence; log it unless a line went out less than ``interval_s`` ago."""
        self._pending += 1
        now = self._clock()
        if now < self._next_at:
            return
        self._logger.log(
            self._level, "%s (%d occurrence(s) since the last report; last: %s)",
            self._message, self._pending, detail or "-",
        )  # fmt: skip
        self._pending = 0
        self._next_at = now + self._interval_s
