"""The Redis replay store: one atomic ``SET key 1 NX PX ttl`` per accepted proof."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from verifier.replay.base import ReplayStoreUnavailable
from verifier.replay.breaker import CircuitBreaker

DEFAULT_KEY_PREFIX = b"dpop:jti:"
DEFAULT_TIMEOUT_S = 0.05
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_QUEUE_TIMEOUT_S = 0.25


class RedisReplayStore:
    """Remembers proof keys in Redis, shared by every replica that uses the same Redis.

    Each key is written as ``<key_prefix><hex(key)>`` with ``SET ... NX PX <ttl_ms>``, so
    exactly one caller across all replicas sees True for a key while it lives, and Redis
    expires it by itself.

    At most ``max_in_flight`` commands run at once (one per pooled connection); further
    callers queue for up to ``queue_timeout_s`` (default 250 ms).

    Failure behaviour (the caller must fail closed on :class:`ReplayStoreUnavailable`):

    * every Redis error and timeout is raised as :class:`ReplayStoreUnavailable`; no Redis
      exception escapes;
    * after ``breaker``'s threshold of consecutive Redis failures (default 5) calls fail at
      once, without touching the network, for its cool-down (default 1 s); then one probe is
      let through, and its success closes the breaker. :meth:`ping` bypasses the breaker;
    * a caller that queued too long fails too, but a local overload does not count as a Redis
      failure, so a traffic burst cannot open the breaker.

    Build it with :meth:`from_url`.
    """

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: bytes = DEFAULT_KEY_PREFIX,
        breaker: CircuitBreaker | None = None,
        max_in_flight: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S,
    ) -> None:
        """Wrap ``client``; the store owns it and closes it (and its pool) in :meth:`close`."""
        self._client = client
        self._key_prefix = key_prefix
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._queue_timeout_s = queue_timeout_s

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float | None = None,
        key_prefix: bytes = DEFAULT_KEY_PREFIX,
        retries: int = 0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S,
        breaker: CircuitBreaker | None = None,
    ) -> RedisReplayStore:
        """A store for ``redis://host:port/db`` or ``rediss://`` (TLS) URLs.

        Nothing is connected yet: connections are opened on first use, so a Redis that is down
        at start-up does not prevent starting. ``username`` and ``password`` apply when the URL
        carries none (credentials in the URL win). TLS options can be given as URL query
        parameters (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``).

        ``timeout_s`` (default 50 ms) bounds each socket read; ``connect_timeout_s`` (default:
        ``timeout_s``) bounds opening a connection. ``retries`` (default 0) re-sends a command
        that failed on a connection error or timeout; note that a retried write whose first
        attempt did land is then seen as a replay, so retries can turn a slow Redis into
        false denials (fail closed, but still denials).
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        pool = BlockingConnectionPool.from_url(
            url,
            username=username,
            password=password,
            socket_timeout=timeout_s,
            socket_connect_timeout=connect_timeout_s or timeout_s,
            retry=Retry(NoBackoff(), retries),
            max_connections=max_connections + 1,  # one spare for ping() under load
            timeout=timeout_s,
            health_check_interval=0,
            # RESP2: every Redis speaks it, and with RESP3 redis-py skips its check for
            # connections the server closed, so each stale pooled connection would fail one
            # request after a Redis restart.
            protocol=2,
        )
        return cls(
            Redis.from_pool(pool),
            key_prefix=key_prefix,
            breaker=breaker,
            max_in_flight=max_connections,
            queue_timeout_s=queue_timeout_s,
        )

    async def first_use(self, key: bytes, ttl_seconds: float) -> bool:
        """True the first time ``key`` is seen within ``ttl_seconds``, False on a replay.

        Raises :class:`ReplayStoreUnavailable` when Redis cannot tell (down, slow, erroring,
        the breaker is open, or every connection stayed busy), and ValueError when
        ``ttl_seconds`` is not positive.
        """
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        async with self._slot():
            if not self._breaker.allow():
                raise ReplayStoreUnavailable("redis replay store unavailable (circuit open)")
            try:
                was_set = await self._client.set(
                    self._key_prefix + key.hex().encode("ascii"),
                    b"1",
                    nx=True,
                    px=_ttl_ms(ttl_seconds),
                )
            except Exception as exc:  # any failure means we cannot tell: fail closed
                self._breaker.record_failure()
                raise ReplayStoreUnavailable(f"redis replay store unavailable: {exc!r}") from exc
        self._breaker.record_success()
        return bool(was_set)

    async def ping(self) -> bool:
        """True when Redis answers PING within the timeout; never raises."""
        try:
            return bool(await self._client.ping())
        except Exception:
            return False

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise ReplayStoreUnavailable("redis replay store busy (queue timeout)") from None
        try:
            yield
        finally:
            self._slots.release()


def _ttl_ms(ttl_seconds: float) -> int:
    """The TTL in whole milliseconds, rounded up so a key never lives shorter than asked."""
    return max(1, math.ceil(ttl_seconds * 1000))
