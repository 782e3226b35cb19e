"""Replay-store settings: which store (``DPOP_REPLAY_URL``), how to reach Redis, and what to
do when it is down. :meth:`ReplaySettings.open_store` opens the store this section
names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import SplitResult, urlsplit

from verifier.config.values import (
    SECRET,
    URL,
    ConfigError,
    Parser,
    Section,
    check_file,
    check_min,
    parse_password,
    redact_url,
)
from verifier.domain.ports import ReplayStore
from verifier.replay import MemoryReplayStore, RedisReplayStore, replay_scheme
from verifier.replay.redis_url import REDIS_SCHEMES, parse_redis_url

REPLAY_URL_SCHEMES = ("memory", *REDIS_SCHEMES)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ReplaySettings(Section):
    """The replay store and its connection. Checks itself on construction: a Redis option
    that cannot work with the chosen URL is refused."""

    replay_url: str = field(default="memory://", metadata=URL)
    redis_username: str = ""
    redis_password: str = field(default="", metadata=SECRET)
    replay_timeout_ms: int = 50
    replay_fail_open: bool = False
    redis_sentinel_username: str = ""
    redis_sentinel_password: str = field(default="", metadata=SECRET)
    redis_ca_file: str = ""
    redis_cert_file: str = ""
    redis_key_file: str = ""
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 50
    redis_retries: int = 1
    redis_key_prefix: str = "dpop:jti:"
    memory_replay_max_entries: int = 1_000_000

    PARSERS: ClassVar[Mapping[str, Parser]] = {
        "redis_password": parse_password,
        "redis_sentinel_password": parse_password,
    }
    SECRET_FILES: ClassVar[Mapping[str, str]] = {
        "redis_password": "redis_password_file",
        "redis_sentinel_password": "redis_sentinel_password_file",
    }
    TEXT_SECRETS: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_replay_url(self.replay_url)
        self._check_redis()
        check_min("DPOP_REPLAY_TIMEOUT_MS", self.replay_timeout_ms, 1)
        check_min("DPOP_MEMORY_REPLAY_MAX_ENTRIES", self.memory_replay_max_entries, 1)

    @property
    def scheme(self) -> str:
        """The URL's scheme, lower-case (``memory``, ``rediss+sentinel``, ...)."""
        return self.replay_url.partition("://")[0].lower()

    def open_store(self) -> ReplayStore:
        """The replay store this section names (``DPOP_REPLAY_URL`` and the Redis options).

        * ``memory://``: a :class:`MemoryReplayStore` of ``memory_replay_max_entries`` keys, which
          only protects a single process;
        * ``redis://``, ``redis+sentinel://``, ``redis+cluster://`` and their ``rediss`` (TLS)
          forms: a :class:`RedisReplayStore` (:meth:`RedisReplayStore.from_url`); no connection
          is opened yet.

        The section has checked its URL; a scheme it let through that no store serves raises
        ValueError naming ``DPOP_REPLAY_URL`` (never echoing the URL, which may carry a password).
        """
        scheme = replay_scheme(self.replay_url)
        if scheme == "memory":
            return MemoryReplayStore(max_entries=self.memory_replay_max_entries)
        if scheme in REDIS_SCHEMES:
            return RedisReplayStore.from_url(
                self.replay_url.strip(),
                username=self.redis_username or None,
                password=self.redis_password or None,
                sentinel_username=self.redis_sentinel_username or None,
                sentinel_password=self.redis_sentinel_password or None,
                ca_file=self.redis_ca_file,
                cert_file=self.redis_cert_file,
                key_file=self.redis_key_file,
                timeout_s=self.replay_timeout_ms / 1000,
                wait_replicas=self.redis_wait_replicas,
                wait_timeout_s=self.redis_wait_timeout_ms / 1000,
                retries=self.redis_retries,
                key_prefix=self.redis_key_prefix.encode(),
            )
        raise ValueError(
            f"DPOP_REPLAY_URL: unsupported scheme {scheme!r}; expected memory:// or one of "
            f"{', '.join(s + '://' for s in REDIS_SCHEMES)}"
        )

    def _check_redis(self) -> None:
        """Redis settings that cannot work with the chosen DPOP_REPLAY_URL are refused."""
        scheme = self.scheme
        uses_redis = scheme in REDIS_SCHEMES
        uses_tls = uses_redis and scheme.startswith("rediss")
        check_min("DPOP_REDIS_WAIT_REPLICAS", self.redis_wait_replicas, 0)
        check_min("DPOP_REDIS_WAIT_TIMEOUT_MS", self.redis_wait_timeout_ms, 1)
        check_min("DPOP_REDIS_RETRIES", self.redis_retries, 0)
        if self.redis_retries > 3:
            raise ConfigError("DPOP_REDIS_RETRIES", f"must be at most 3, got {self.redis_retries}")
        if not self.redis_key_prefix or any(c.isspace() for c in self.redis_key_prefix):
            raise ConfigError("DPOP_REDIS_KEY_PREFIX", "must be non-empty, without spaces")
        needs_redis = {
            "DPOP_REDIS_USERNAME": self.redis_username,
            "DPOP_REDIS_PASSWORD": self.redis_password,
            "DPOP_REDIS_WAIT_REPLICAS": self.redis_wait_replicas,
        }
        for setting, value in needs_redis.items():
            if value and not uses_redis:
                raise ConfigError(setting, "is set but DPOP_REPLAY_URL is not a Redis URL")
        sentinel_only = {
            "DPOP_REDIS_SENTINEL_USERNAME": self.redis_sentinel_username,
            "DPOP_REDIS_SENTINEL_PASSWORD": self.redis_sentinel_password,
        }
        for setting, value in sentinel_only.items():
            if value and not scheme.endswith("+sentinel"):
                raise ConfigError(setting, "needs a redis+sentinel:// or rediss+sentinel:// URL")
        tls_files = {
            "DPOP_REDIS_CA_FILE": self.redis_ca_file,
            "DPOP_REDIS_CERT_FILE": self.redis_cert_file,
            "DPOP_REDIS_KEY_FILE": self.redis_key_file,
        }
        for setting, path in tls_files.items():
            if not path:
                continue
            if not uses_tls:
                raise ConfigError(setting, "needs a TLS URL (rediss://, rediss+sentinel://, ...)")
            check_file(setting, path)
        if bool(self.redis_cert_file) != bool(self.redis_key_file):
            missing = "DPOP_REDIS_KEY_FILE" if self.redis_cert_file else "DPOP_REDIS_CERT_FILE"
            raise ConfigError(missing, "DPOP_REDIS_CERT_FILE and DPOP_REDIS_KEY_FILE go together")


def _check_replay_url(url: str) -> None:
    setting = "DPOP_REPLAY_URL"
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in REDIS_SCHEMES:
        try:
            parse_redis_url(url)  # its messages never contain the password
        except ValueError as exc:
            raise ConfigError(setting, str(exc).removeprefix(f"{setting}: ")) from None
        return
    try:
        parts: SplitResult = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise ConfigError(setting, f"not a valid URL: {redact_url(url)!r}") from None
    if parts.scheme.lower() != "memory":
        raise ConfigError(setting, f"scheme must be one of {', '.join(REPLAY_URL_SCHEMES)}://")
    if parts.netloc or parts.path.strip("/") or parts.query:
        raise ConfigError(setting, "memory:// takes no host, path or options")
