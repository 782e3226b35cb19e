"""Replay stores: remember each accepted proof once, for its lifetime (RFC 9449 §11.1)."""

from __future__ import annotations

from urllib.parse import urlsplit

from verifier.domain.ports import ReplayStore, ReplayStoreUnavailable
from verifier.replay.memory import MemoryReplayStore
from verifier.replay.redis_store import RedisReplayStore
from verifier.replay.redis_url import REDIS_SCHEMES, RedisTarget, parse_redis_url

__all__ = [
    "REDIS_SCHEMES",
    "MemoryReplayStore",
    "RedisReplayStore",
    "RedisTarget",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "describe_replay_url",
    "parse_redis_url",
    "replay_scheme",
]


def describe_replay_url(url: str) -> str:
    """A one-line, password-free description of the store ``url`` names, for logs."""
    if not url.strip() or replay_scheme(url) == "memory":
        return "in-memory (this process only)"
    target = parse_redis_url(url)
    nodes = ",".join(f"{host}:{port}" for host, port in target.nodes)
    where = f"sentinels {nodes}, master {target.service_name!r}" if target.service_name else nodes
    tls = "TLS" if target.tls else "plaintext"
    return f"redis {target.mode} ({where}, db {target.db}, {tls})"


def replay_scheme(url: str) -> str:
    """The URL's scheme, lower case (``memory``, ``redis``, ``redis+sentinel``, ...)."""
    head, sep, _ = url.strip().partition("://")
    return head.lower() if sep else urlsplit(url.strip()).scheme.lower()
