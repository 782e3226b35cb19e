"""Replay stores: remember each accepted proof once, for its lifetime (RFC 9449 §11.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from verifier.domain.ports import ReplayStore, ReplayStoreUnavailable
from verifier.replay.memory import MemoryReplayStore
from verifier.replay.redis_store import RedisReplayStore
from verifier.replay.redis_url import REDIS_SCHEMES, RedisTarget, parse_redis_url

if TYPE_CHECKING:
    from verifier.config.replay import ReplaySettings

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


def open_replay_store(settings: ReplaySettings) -> ReplayStore:
    """The replay store ``settings`` name (``DPOP_REPLAY_URL`` and the Redis options).

    * ``memory://``: a :class:`MemoryReplayStore` of ``memory_replay_max_entries`` keys, which
      only protects a single process;
    * ``redis://``, ``redis+sentinel://``, ``redis+cluster://`` and their ``rediss`` (TLS)
      forms: a :class:`RedisReplayStore` (:meth:`RedisReplayStore.from_url`); no connection
      is opened yet.

    The section has checked its URL; a scheme it let through that no store serves raises
    ValueError naming ``DPOP_REPLAY_URL`` (never echoing the URL, which may carry a password).
    """
    scheme = _scheme(settings.replay_url)
    if scheme == "memory":
        return MemoryReplayStore(max_entries=settings.memory_replay_max_entries)
    if scheme in REDIS_SCHEMES:
        return RedisReplayStore.from_url(
            settings.replay_url.strip(),
            username=settings.redis_username or None,
            password=settings.redis_password or None,
            sentinel_username=settings.redis_sentinel_username or None,
            sentinel_password=settings.redis_sentinel_password or None,
            ca_file=settings.redis_ca_file,
            cert_file=settings.redis_cert_file,
            key_file=settings.redis_key_file,
            timeout_s=settings.replay_timeout_ms / 1000,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_s=settings.redis_wait_timeout_ms / 1000,
            retries=settings.redis_retries,
            key_prefix=settings.redis_key_prefix.encode(),
        )
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
