"""Replay stores: remember each accepted proof once, for its lifetime (RFC 9449 §11.1)."""

from __future__ import annotations

from urllib.parse import urlsplit

from verifier.domain.ports import ReplayStore, ReplayStoreUnavailable
from verifier.replay.memory import MemoryReplayStore
from verifier.replay.redis_store import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    RedisReplayStore,
)
from verifier.replay.redis_url import REDIS_SCHEMES, RedisTarget, parse_redis_url

__all__ = [
    "REDIS_SCHEMES",
    "MemoryReplayStore",
    "RedisReplayStore",
    "RedisTarget",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "describe_replay_url",
    "open_replay_store",
    "parse_redis_url",
]


def open_replay_store(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    sentinel_username: str | None = None,
    sentinel_password: str | None = None,
    ca_file: str = "",
    cert_file: str = "",
    key_file: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    wait_replicas: int = 0,
    wait_timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    key_prefix: bytes = DEFAULT_KEY_PREFIX,
    memory_max_entries: int = 1_000_000,
) -> ReplayStore:
    """The replay store named by ``url`` (the ``DPOP_REPLAY_URL`` setting).

    * empty or ``memory://``: a :class:`MemoryReplayStore` of ``memory_max_entries`` keys,
      which only protects a single process;
    * ``redis://``, ``redis+sentinel://``, ``redis+cluster://`` and their ``rediss`` (TLS)
      forms: a :class:`RedisReplayStore` (see :meth:`RedisReplayStore.from_url` for the
      other arguments); no connection is opened yet.

    Raises ValueError naming ``DPOP_REPLAY_URL`` for any other scheme or a malformed URL.
    """
    if not url.strip():
        return MemoryReplayStore(max_entries=memory_max_entries)
    scheme = _scheme(url)
    if scheme == "memory":
        return MemoryReplayStore(max_entries=memory_max_entries)
    if scheme in REDIS_SCHEMES:
        return RedisReplayStore.from_url(
            url.strip(),
            username=username,
            password=password,
            sentinel_username=sentinel_username,
            sentinel_password=sentinel_password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            timeout_s=timeout_s,
            wait_replicas=wait_replicas,
            wait_timeout_s=wait_timeout_s,
            retries=retries,
            key_prefix=key_prefix,
        )
    # Never echo the URL itself: it may carry a password.
    raise ValueError(
        f"DPOP_REPLAY_URL: unsupported scheme {scheme!r}; expected memory:// or one of "
        f"{', '.join(s + '://' for s in REDIS_SCHEMES)}"
    )


def describe_replay_url(url: str) -> str:
    """A one-line, password-free description of the store ``url`` names, for logs."""
    if not url.strip() or _scheme(url) == "memory":
        return "in-memory (this process only)"
    target = parse_redis_url(url)
    nodes = ",".join(f"{host}:{port}" for host, port in target.nodes)
    where = f"sentinels {nodes}, master {target.service_name!r}" if target.service_name else nodes
    tls = "TLS" if target.tls else "plaintext"
    return f"redis {target.mode} ({where}, db {target.db}, {tls})"


def _scheme(url: str) -> str:
    head, sep, _ = url.strip().partition("://")
    return head.lower() if sep else urlsplit(url.strip()).scheme.lower()
