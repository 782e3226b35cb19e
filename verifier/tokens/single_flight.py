"""One fetch at a time of a document that many threads may need at once (a JWK Set, metadata)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class SingleFlight:
    """Runs ``fetch`` for the threads that ask, never twice at the same time.

    A caller arriving while a fetch is under way waits for that fetch instead of starting its
    own; otherwise it runs a new one on its own thread, provided ``min_interval`` seconds (on
    ``clock``) have passed since the last one started. ``fetch`` should not raise (its
    exception reaches only the thread that ran it).
    """

    def __init__(self, fetch: Callable[[], None], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._ongoing: threading.Event | None = None
        self.last_started = float("-inf")

    def run(self, min_interval: float = 0.0) -> bool:
        """Fetch now, wait for the fetch under way, or (inside ``min_interval``) do nothing.

        True when this call started a fetch; either way, any fetch it ran or waited for has
        ended when it returns."""
        with self._lock:
            ongoing = self._ongoing
            if ongoing is None:
                now = self._clock()
                if now - self.last_started < min_interval:
                    return False
                self.last_started = now
                self._ongoing = mine = threading.Event()
        if ongoing is not None:
            ongoing.wait()
            return False
        try:
            self._fetch()
        finally:
            with self._lock:
                self._ongoing = None
            mine.set()
        return True
