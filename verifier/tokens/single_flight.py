"""One fetch at a time of a document that many threads may need at once (a JWK Set, metadata)."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable


class Flight(enum.Enum):
    """What one :meth:`SingleFlight.run` call did."""

    STARTED = "started"
    """It ran a fetch of its own."""
    JOINED = "joined"
    """It waited for a fetch that another thread had started."""
    SKIPPED = "skipped"
    """No fetch was under way and none was allowed to start."""

    def __bool__(self) -> bool:
        return self is Flight.STARTED


class SingleFlight:
    """Runs ``fetch`` for the threads that ask, never twice at the same time.

    A caller arriving while a fetch is under way waits for that fetch instead of starting its
    own; otherwise it runs a new one on its own thread, provided ``min_interval`` seconds (on
    ``clock``) have passed since the last one started and ``may_start`` (when given) agrees.
    ``fetch`` should not raise (its exception reaches only the thread that ran it).
    """

    def __init__(self, fetch: Callable[[], None], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._ongoing: threading.Event | None = None
        self.last_started = float("-inf")

    def run(
        self, min_interval: float = 0.0, *, may_start: Callable[[float], bool] | None = None
    ) -> Flight:
        """Fetch now, wait for the fetch under way, or (inside ``min_interval``, or when
        ``may_start(now)`` says no) do nothing.

        ``may_start`` is called under the flight's lock, only when no fetch is under way, and
        only once ``min_interval`` has passed, so it may claim a budget of its own (a cool-down)
        without racing other callers. Either way, any fetch this call ran or waited for has
        ended when it returns; the result is truthy only when this call started it."""
        with self._lock:
            ongoing = self._ongoing
            if ongoing is None:
                now = self._clock()
                if now - self.last_started < min_interval:
                    return Flight.SKIPPED
                if may_start is not None and not may_start(now):
                    return Flight.SKIPPED
                self.last_started = now
                self._ongoing = mine = threading.Event()
        if ongoing is not None:
            ongoing.wait()
            return Flight.JOINED
        try:
            self._fetch()
        finally:
            with self._lock:
                self._ongoing = None
            mine.set()
        return Flight.STARTED
