"""The replay-store port: records each accepted proof once, atomically, across replicas."""

from __future__ import annotations

from typing import Protocol


class ReplayStoreUnavailable(Exception):
    """The store did not answer (in time): the caller must fail closed."""


class ReplayStore(Protocol):
    """Remembers proof keys for a bounded time.

    ``first_use(key, ttl_seconds)`` returns True exactly once per ``key`` while the key is
    remembered (atomic: concurrent callers for the same key see at most one True), and raises
    :class:`ReplayStoreUnavailable` when it cannot tell. Every method blocks the calling thread
    (for a bounded time) and is safe to call from many threads at once.
    """

    def first_use(self, key: bytes, ttl_seconds: float) -> bool:
        """True the first time ``key`` is seen, False while it is remembered (a replay).

        ``key`` is remembered for ``ttl_seconds`` (must be positive) from this call. Raises
        :class:`ReplayStoreUnavailable` when the store cannot tell.
        """
        ...

    def ping(self) -> bool:
        """True when the store is reachable now (used by health), within the store's own
        deadline; never raises."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...
