"""A small circuit breaker: stop waiting on a store that keeps failing.

Pure bookkeeping over an injectable clock; it performs no I/O and never sleeps.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused without being tried until the cool-down has passed."""
    HALF_OPEN = "half_open"
    """One probe call is in flight; every other call is refused until it reports."""


class CircuitBreaker:
    """Fails fast after ``failure_threshold`` consecutive failures.

    Usage, around each call to the protected dependency::

        if not breaker.allow():
            raise Unavailable(...)
        try:
            result = call()
        except Error:
            breaker.record_failure()
            raise
        breaker.record_success()

    After ``failure_threshold`` consecutive failures the breaker opens: :meth:`allow` returns
    False for ``cooldown_s`` seconds. Then it lets exactly one probe through (half-open); the
    probe's success closes the breaker, its failure opens it for another cool-down. A probe
    that never reports (its caller was interrupted) is given up on after ``cooldown_s`` and
    another probe is let through, so the breaker cannot stay stuck.

    Thread-safe: one breaker is shared by every worker thread that calls the store; each
    method holds a lock for its few lines.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_s <= 0:
            raise ValueError("cooldown_s must be positive")
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._not_before = 0.0
        """OPEN: when the next probe may go. HALF_OPEN: when the probe in flight is given up on."""
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        """The current state (as of the last call; time alone does not change it)."""
        return self._state

    def allow(self) -> bool:
        """True when a call may be attempted now."""
        if self._state is BreakerState.CLOSED:  # the common case, read without the lock
            return True
        with self._lock:
            return self._allow_locked()

    def _allow_locked(self) -> bool:
        if self._state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if now < self._not_before:
            return False
        self._state = BreakerState.HALF_OPEN
        self._not_before = now + self._cooldown_s
        return True

    def record_success(self) -> None:
        """The call went through: close the breaker and forget past failures."""
        if self._state is BreakerState.CLOSED and not self._failures:
            return  # the common case: nothing to change
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0

    def record_failure(self) -> None:
        """The call failed: count it, and open the breaker when the threshold is reached."""
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
                self._state = BreakerState.OPEN
                self._not_before = self._clock() + self._cooldown_s
