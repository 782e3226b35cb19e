"""The Redis replay store: one atomic ``SET key token NX PX ttl`` per accepted proof."""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Iterator

from verifier.domain.ports import ReplayStoreUnavailable
from verifier.replay.breaker import CircuitBreaker
from verifier.replay.redis_blocking import (
    BlockingCluster,
    BlockingSentinel,
    BlockingStandalone,
    ConnectOptions,
    Slot,
    WaitPolicy,
)
from verifier.replay.redis_url import RedisMode, parse_redis_url
from verifier.replay.resp_protocol import RespConnectionError

DEFAULT_KEY_PREFIX = b"dpop:jti:"
DEFAULT_TIMEOUT_S = 0.05
DEFAULT_RETRIES = 1
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_QUEUE_TIMEOUT_S = 0.25

_TOKEN_BYTES = 16
_PING_SLACK_S = 0.2
""":meth:`RedisReplayStore.ping` may take this long beyond the store's deadline (a Sentinel
lookup or a slot map load, then one round trip per master)."""
# Errors after which the command certainly or possibly did not run, and a new connection may
# do better: refused, reset, closed, master changed (Sentinel), slot moved (Cluster). A timeout
# is not among them: a slow Redis is not faster the second time, and the breaker handles it.
_RETRYABLE = (RespConnectionError,)


class RedisReplayStore:
    """Remembers proof keys in Redis, shared by every replica that uses the same Redis.

    Each key is written as ``<key_prefix><hex(key)>`` holding a random per-call token, with
    ``SET ... NX PX <ttl_ms>``, so exactly one caller across all replicas sees True for a key
    while it lives, and Redis expires it by itself. Works against a standalone server, a
    Sentinel-managed master or a Redis Cluster (see :func:`parse_redis_url`), through the lean
    RESP client (:mod:`verifier.replay.resp_protocol`) and a pool of connections
    (:mod:`verifier.replay.redis_blocking`): with Sentinel it finds the master as redis-py's
    sentinel client does, with a cluster it routes each key to its slot's master.

    **Threads.** Every method blocks the calling thread and is thread-safe; many worker
    threads share one store, its pool and its breaker.

    **Deadline.** Each :meth:`first_use` has ``timeout_s`` (plus the ``WAIT`` timeout, if
    any) for all its attempts together; past it the call fails.

    **Retries** (``retries``, default 1) follow only errors that mean "try another
    connection" (connection refused / reset / closed, a demoted Sentinel master, a moved
    cluster slot), never a timeout, and never blindly: a retry writes the same token with
    ``SET NX`` and reads the key back in the same round trip. Finding its own token means the
    earlier attempt did land and its reply was lost: that is still a first use, so a retry
    never turns a first use into a false ``replayed``. Another caller's token is a replay.

    **WAIT** (``wait``): after recording a key, ``WAIT replicas timeout_ms`` on the same
    connection; fewer acknowledgements than asked make the call fail (fail closed; the key
    stays). This bounds the asynchronous-replication hole at failover (docs/replay.md).

    **Circuit breaker**: after ``breaker``'s threshold of consecutive failed calls (default
    5) calls fail at once, without touching the network, for its cool-down (default 1 s);
    then one probe goes through, and its success closes it. :meth:`ping` bypasses it.

    **Concurrency**: at most ``max_connections`` calls at once (one per pooled connection;
    see :meth:`from_url`); further callers wait for up to ``queue_timeout_s``; a queue
    timeout fails the call but is a local overload, not a Redis failure, so it does not count
    for the breaker.

    Every failure is raised as :class:`ReplayStoreUnavailable`; no Redis exception escapes.
    Build it with :meth:`from_url`.
    """

    def __init__(
        self,
        backend: BlockingStandalone,
        *,
        key_prefix: bytes = DEFAULT_KEY_PREFIX,
        deadline_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        wait: WaitPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S,
    ) -> None:
        """Wrap ``backend`` (a standalone, Sentinel or Cluster pool); the store owns it and
        closes it in :meth:`close`."""
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self._backend = backend
        self._key_prefix = key_prefix
        self._deadline_s = deadline_s
        self._retries = retries
        self._wait = wait if wait is not None and wait.replicas > 0 else None
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._queue_timeout_s = queue_timeout_s

    @classmethod
    def from_url(
        cls,
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
        connect_timeout_s: float | None = None,
        wait_replicas: int = 0,
        wait_timeout_s: float = DEFAULT_TIMEOUT_S,
        key_prefix: bytes = DEFAULT_KEY_PREFIX,
        retries: int = DEFAULT_RETRIES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout_s: float | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> RedisReplayStore:
        """A store for a ``redis://``, ``rediss://``, ``redis+sentinel://`` or
        ``redis+cluster://`` URL (:func:`~verifier.replay.redis_url.parse_redis_url`).

        Nothing is connected yet: connections are opened on first use, so a Redis that is
        down at start-up does not prevent starting. ``username`` and ``password`` (the data
        nodes' ACL user) override credentials in the URL; ``sentinel_*`` authenticate to the
        sentinels. ``ca_file`` (PEM bundle; default: the system's), ``cert_file`` and
        ``key_file`` (client certificate) apply to ``rediss`` schemes.

        ``timeout_s`` (default 50 ms) is the budget of one :meth:`first_use`, retries
        included; ``connect_timeout_s`` (default: ``timeout_s``) bounds opening a connection.
        ``wait_replicas`` > 0 adds ``WAIT wait_replicas wait_timeout_s`` to every write (and
        its timeout to the budget). At most ``max_connections`` calls run at once (default
        64, one connection each; in a cluster, one per master each); a call waits at most
        ``queue_timeout_s`` for a free one (default: 250 ms or the budget, whichever is
        longer). Raises ValueError naming ``DPOP_REPLAY_URL`` for a bad URL.
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if wait_replicas < 0 or wait_timeout_s <= 0:
            raise ValueError("wait_replicas must not be negative, wait_timeout_s positive")
        target = parse_redis_url(url)
        wait = None
        if wait_replicas:
            wait = WaitPolicy(wait_replicas, max(1, math.ceil(wait_timeout_s * 1000)))
        deadline_s = timeout_s + (wait_timeout_s if wait else 0.0)
        options = ConnectOptions(
            username=username or target.username,
            password=password or target.password,
            sentinel_username=sentinel_username,
            sentinel_password=sentinel_password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            socket_timeout_s=deadline_s,
            connect_timeout_s=connect_timeout_s or timeout_s,
        )
        backend: BlockingStandalone
        if target.mode is RedisMode.CLUSTER:
            backend = BlockingCluster(
                target.nodes, tls=target.tls, options=options, max_connections=max_connections
            )
        elif target.mode is RedisMode.SENTINEL:
            backend = BlockingSentinel(
                target.nodes,
                target.service_name,
                db=target.db,
                tls=target.tls,
                options=options,
                max_connections=max_connections,
            )
        else:
            ((host, port),) = target.nodes
            backend = BlockingStandalone(
                host,
                port,
                db=target.db,
                tls=target.tls,
                options=options,
                max_connections=max_connections,
            )
        return cls(
            backend,
            key_prefix=key_prefix,
            deadline_s=deadline_s,
            retries=retries,
            wait=wait,
            breaker=breaker,
            queue_timeout_s=queue_timeout_s or max(DEFAULT_QUEUE_TIMEOUT_S, deadline_s),
        )

    def first_use(self, key: bytes, ttl_seconds: float) -> bool:
        """True the first time ``key`` is seen within ``ttl_seconds``, False on a replay.

        Blocks for at most the queue timeout plus the deadline. Raises
        :class:`ReplayStoreUnavailable` when Redis cannot tell (down, slow, erroring, too few
        replicas acknowledged, the breaker is open, or every connection stayed busy), and
        ValueError when ``ttl_seconds`` is not positive.
        """
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        redis_key = self._key_prefix + key.hex().encode("ascii")
        slot = self._backend.acquire(self._queue_timeout_s)
        if slot is None:
            raise ReplayStoreUnavailable("redis replay store busy (queue timeout)")
        try:
            with self._breaker_guard():
                deadline = time.monotonic() + self._deadline_s
                first = self._claim(slot, redis_key, _ttl_ms(ttl_seconds), deadline)
        finally:
            self._backend.release(slot)
        return first

    def ping(self) -> bool:
        """True when Redis is reachable now: every master answers ``PING`` and, with ``WAIT``,
        has at least ``wait_replicas`` replicas connected (a ``WAIT`` on the same connection).

        Takes a pooled connection like :meth:`first_use` but bypasses the breaker (health
        must see Redis come back while the breaker is open). Returns within the deadline plus
        0.2 s, waiting for a free connection included; never raises: any failure is False.
        """
        deadline = time.monotonic() + self._deadline_s + _PING_SLACK_S
        try:
            slot = self._backend.acquire(self._deadline_s + _PING_SLACK_S)
            if slot is None:
                return False
            try:
                return self._backend.ping(slot, self._wait, deadline)
            finally:
                self._backend.release(slot)
        except Exception:  # reachable or not is the whole answer
            return False

    def close(self) -> None:
        """Close every connection; later calls fail (:meth:`ping`: False)."""
        self._backend.close()

    @contextlib.contextmanager
    def _breaker_guard(self) -> Iterator[None]:
        """One store call behind the breaker: refused at once while it is open; any failure
        inside counts for it and becomes :class:`ReplayStoreUnavailable` (fail closed); a
        success closes it."""
        if not self._breaker.allow():
            raise ReplayStoreUnavailable("redis replay store unavailable (circuit open)")
        try:
            yield
        except ReplayStoreUnavailable:
            self._breaker.record_failure()
            raise
        except TimeoutError as exc:
            self._breaker.record_failure()
            raise ReplayStoreUnavailable("redis replay store did not answer in time") from exc
        except Exception as exc:  # any failure means we cannot tell: fail closed
            self._breaker.record_failure()
            detail = str(exc) or type(exc).__name__  # the cause in words, never a repr
            raise ReplayStoreUnavailable(f"redis replay store unavailable: {detail}") from exc
        self._breaker.record_success()

    def _claim(self, slot: Slot, redis_key: bytes, ttl_ms: int, deadline: float) -> bool:
        # A retry runs on the same slot, whose failed connection closed: a fresh connection.
        token = secrets.token_bytes(_TOKEN_BYTES)
        attempt = 0
        while True:
            try:
                if attempt == 0:
                    return self._first_attempt(slot, redis_key, token, ttl_ms, deadline)
                return self._retry_attempt(slot, redis_key, token, ttl_ms, deadline)
            except _RETRYABLE:
                if attempt >= self._retries:
                    raise
                attempt += 1

    def _first_attempt(
        self, slot: Slot, redis_key: bytes, token: bytes, ttl_ms: int, deadline: float
    ) -> bool:
        was_set, acks = self._backend.set_nx(slot, redis_key, token, ttl_ms, self._wait, deadline)
        if was_set:
            self._require_acks(acks)
        return was_set

    def _retry_attempt(
        self, slot: Slot, redis_key: bytes, token: bytes, ttl_ms: int, deadline: float
    ) -> bool:
        stored = self._backend.set_nx_then_get(slot, redis_key, token, ttl_ms, deadline)
        if stored is None:  # gone between SET and GET: cannot happen within a TTL
            raise ReplayStoreUnavailable("redis replay store lost a key it just wrote")
        if stored != token:
            return False  # another caller's token: a replay
        # Ours, written now or by the attempt whose reply was lost.
        if self._wait is not None:
            # WAIT counts acknowledgements of this connection's last write, which may not
            # be our key: rewrite the same value so that it is.
            acks = self._backend.rewrite_and_wait(slot, redis_key, token, self._wait, deadline)
            self._require_acks(acks)
        return True

    def _require_acks(self, acks: int | None) -> None:
        if self._wait is None:
            return
        if acks is None or acks < self._wait.replicas:
            raise ReplayStoreUnavailable(
                f"only {acks or 0} of {self._wait.replicas} Redis replicas acknowledged "
                f"within {self._wait.timeout_ms} ms"
            )


def _ttl_ms(ttl_seconds: float) -> int:
    """The TTL in whole milliseconds, rounded up so a key never lives shorter than asked."""
    return max(1, math.ceil(ttl_seconds * 1000))
