"""An in-process replay store: for a single replica, development and tests."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

from verifier.domain.ports import ReplayStoreUnavailable


class MemoryReplayStore:
    """Remembers proof keys in this process's memory, each until its TTL has passed.

    It only protects one process: behind several replicas a proof replayed to another
    replica is not seen. Use the Redis store there.

    Bounded to ``max_entries`` keys (default 1,000,000; roughly 200 bytes each for 32-byte
    keys). Expired keys are purged cheaply on every call (a min-heap of expiry times:
    amortized O(log n) per key, never a scan). When the store is full of keys that are all
    still inside their TTL, :meth:`first_use` raises :class:`ReplayStoreUnavailable`
    ("memory replay store full") rather than evicting one: forgetting a live key would let
    that proof be replayed inside its window. So a flood of fresh proofs beyond capacity
    makes requests fail closed until keys expire; size ``max_entries`` above the peak rate
    of accepted proofs times the TTL.

    Thread-safe: one lock around purge, check and write, so concurrent callers see at most
    one True per key; a call never waits for I/O. ``clock`` returns seconds and must be
    monotonic.
    """

    def __init__(
        self,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._expiry_by_key: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many keys are held, including any that expired since the last call."""
        return len(self._expiry_by_key)

    def first_use(self, key: bytes, ttl_seconds: float) -> bool:
        """True the first time ``key`` is seen within ``ttl_seconds``, False on a replay.

        Raises :class:`ReplayStoreUnavailable` when the store is full of live keys, and
        ValueError when ``ttl_seconds`` is not positive.
        """
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        with self._lock:
            now = self._clock()
            self._purge_expired(now)
            if key in self._expiry_by_key:
                return False
            if len(self._expiry_by_key) >= self._max_entries:
                raise ReplayStoreUnavailable("memory replay store full")
            expires_at = now + ttl_seconds
            self._expiry_by_key[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def ping(self) -> bool:
        """Always True: memory is always reachable."""
        return True

    def close(self) -> None:
        """Forget every key."""
        with self._lock:
            self._expiry_by_key.clear()
            self._heap.clear()

    def _purge_expired(self, now: float) -> None:
        # Every held key has exactly one heap entry: keys are only added when absent.
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            del self._expiry_by_key[key]
