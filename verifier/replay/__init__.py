"""Replay stores: remember each accepted proof once, for its lifetime (RFC 9449 §11.1)."""

from __future__ import annotations

from urllib.parse import urlsplit

from verifier.replay.base import ReplayStore, ReplayStoreUnavailable
from verifier.replay.memory import MemoryReplayStore
from verifier.replay.redis_store import DEFAULT_TIMEOUT_S, RedisReplayStore

__all__ = [
    "MemoryReplayStore",
    "RedisReplayStore",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "open_replay_store",
]


def open_replay_store(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_max_entries: int = 1_000_000,
) -> ReplayStore:
    """The replay store named by ``url`` (the ``DPOP_REPLAY_URL`` setting).

    * empty or ``memory://``: a :class:`MemoryReplayStore` of ``memory_max_entries`` keys,
      which only protects a single process;
    * ``redis://`` or ``rediss://`` (TLS): a :class:`RedisReplayStore` with ``username``,
      ``password`` and a per-operation ``timeout_s``; no connection is opened yet.

    Raises ValueError naming ``DPOP_REPLAY_URL`` for any other scheme.
    """
    if not url.strip():
        return MemoryReplayStore(max_entries=memory_max_entries)
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme == "memory":
        return MemoryReplayStore(max_entries=memory_max_entries)
    if scheme in ("redis", "rediss"):
        return RedisReplayStore.from_url(
            url.strip(), username=username, password=password, timeout_s=timeout_s
        )
    # Never echo the URL itself: it may carry a password.
    raise ValueError(
        f"DPOP_REPLAY_URL: unsupported scheme {scheme!r}; expected memory://, redis:// or rediss://"
    )
