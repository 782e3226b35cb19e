"""The few Redis commands the replay store sends, for standalone, Sentinel and Cluster clients.

Each backend sends the commands of one step on ONE connection (a pipeline), because ``WAIT``
counts the replicas that acknowledged *that connection's* last write. redis-py's own retries
are switched off everywhere (``Retry(NoBackoff(), 0)``, cluster retries 0): a blindly re-sent
``SET NX`` whose first copy did land reads as a replay. :class:`RedisReplayStore` retries
itself, safely.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, SSLConnection
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from verifier.replay.redis_url import RedisMode, RedisTarget


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """``WAIT replicas timeout_ms`` after each recorded proof: see docs/replay.md."""

    replicas: int
    timeout_ms: int


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ConnectOptions:
    """How to open connections. Credentials and TLS files come from settings, never the CLI."""

    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    socket_timeout_s: float = 0.05
    connect_timeout_s: float = 0.05
    max_connections: int = 64
    """Per server (per node in a cluster)."""


class RedisBackend(Protocol):
    """One Redis deployment, as the replay store uses it."""

    async def set_nx(
        self, key: bytes, value: bytes, ttl_ms: int, wait: WaitPolicy | None
    ) -> tuple[bool, int | None]:
        """``SET key value NX PX ttl_ms`` [+ ``WAIT``]: (was set, replicas acknowledged)."""
        ...

    async def set_nx_then_get(self, key: bytes, value: bytes, ttl_ms: int) -> bytes | None:
        """``SET key value NX PX ttl_ms`` then ``GET key``: the value now stored."""
        ...

    async def rewrite_and_wait(self, key: bytes, value: bytes, wait: WaitPolicy) -> int | None:
        """``SET key value XX KEEPTTL`` + ``WAIT``: replicas acknowledged, None if key gone."""
        ...

    async def ping(self, wait: WaitPolicy | None) -> bool:
        """Every master answers (and has ``wait.replicas`` replicas connected)."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


def open_backend(target: RedisTarget, options: ConnectOptions) -> RedisBackend:
    """A backend for ``target``; nothing is connected until the first command."""
    if target.mode is RedisMode.CLUSTER:
        return ClusterBackend(_cluster_client(target, options))
    if target.mode is RedisMode.SENTINEL:
        client, sentinel = _sentinel_client(target, options)
        return ClientBackend(client, sentinel)
    return ClientBackend(_standalone_client(target, options))


class ClientBackend:
    """A standalone server or a Sentinel-managed master (one ``redis.asyncio.Redis``).

    With Sentinel, each new connection asks the sentinels for the current master, and a
    connection to a demoted master fails (READONLY becomes a connection error), so a
    failover is followed without restarting anything.
    """

    def __init__(self, client: Redis, sentinel: Sentinel | None = None) -> None:
        self._client = client
        self._sentinel = sentinel

    async def set_nx(
        self, key: bytes, value: bytes, ttl_ms: int, wait: WaitPolicy | None
    ) -> tuple[bool, int | None]:
        if wait is None:
            return bool(await self._client.set(key, value, nx=True, px=ttl_ms)), None
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(key, value, nx=True, px=ttl_ms)
            pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)
            was_set, acks = await pipe.execute()
        return bool(was_set), int(acks)

    async def set_nx_then_get(self, key: bytes, value: bytes, ttl_ms: int) -> bytes | None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(key, value, nx=True, px=ttl_ms)
            pipe.get(key)
            _, stored = await pipe.execute()
        return _bytes_or_none(stored)

    async def rewrite_and_wait(self, key: bytes, value: bytes, wait: WaitPolicy) -> int | None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(key, value, xx=True, keepttl=True)
            pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)
            rewritten, acks = await pipe.execute()
        return int(acks) if rewritten else None

    async def ping(self, wait: WaitPolicy | None) -> bool:
        if wait is None:
            return bool(await self._client.ping())
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.ping()
            # With no write of its own on this connection, WAIT counts the connected replicas.
            pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)
            pong, replicas = await pipe.execute()
        return bool(pong) and int(replicas) >= wait.replicas

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        finally:
            if self._sentinel is not None:  # the master client does not own these
                await self._sentinel.aclose()


class ClusterBackend:
    """Redis Cluster. Single commands follow MOVED/ASK inside redis-py; pipelines (both
    commands hash to one slot, so one node and one connection) refresh the slot map
    themselves after an error, since redis-py only does that on its retry path, which is off.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._loaded = False
        self._topology_stale = False
        self._topology_lock = asyncio.Lock()

    async def set_nx(
        self, key: bytes, value: bytes, ttl_ms: int, wait: WaitPolicy | None
    ) -> tuple[bool, int | None]:
        if wait is None:
            await self._refresh_topology()
            return bool(await self._cluster.set(key, value, nx=True, px=ttl_ms)), None
        was_set, acks = await self._pipeline(
            key,
            ("SET", key, value, "NX", "PX", ttl_ms),
            ("WAIT", wait.replicas, wait.timeout_ms),
        )
        return bool(was_set), int(acks)

    async def set_nx_then_get(self, key: bytes, value: bytes, ttl_ms: int) -> bytes | None:
        _, stored = await self._pipeline(key, ("SET", key, value, "NX", "PX", ttl_ms), ("GET", key))
        return _bytes_or_none(stored)

    async def rewrite_and_wait(self, key: bytes, value: bytes, wait: WaitPolicy) -> int | None:
        rewritten, acks = await self._pipeline(
            key,
            ("SET", key, value, "XX", "KEEPTTL"),
            ("WAIT", wait.replicas, wait.timeout_ms),
        )
        return int(acks) if rewritten else None

    async def ping(self, wait: WaitPolicy | None) -> bool:
        await self._refresh_topology()
        primaries = self._cluster.get_primaries()
        if not primaries:
            return False
        answers = await asyncio.gather(*(self._ping_node(node, wait) for node in primaries))
        return all(answers)

    async def aclose(self) -> None:
        await self._cluster.aclose()

    async def _ping_node(self, node: ClusterNode, wait: WaitPolicy | None) -> bool:
        if not await self._cluster.execute_command("PING", target_nodes=node):
            return False
        if wait is None:
            return True
        replicas = await self._cluster.execute_command(
            "WAIT", wait.replicas, wait.timeout_ms, target_nodes=node
        )
        return int(replicas) >= wait.replicas

    async def _pipeline(self, key: bytes, *commands: tuple[Any, ...]) -> list[Any]:
        await self._refresh_topology()
        node = self._cluster.get_node_from_key(key)  # type: ignore[arg-type]  # bytes work
        pipe = self._cluster.pipeline(transaction=False)
        for command in commands:
            # Pinning every command to the key's master keeps them on one connection, which
            # WAIT needs; a MOVED reply raises instead of being re-sent elsewhere.
            pipe.execute_command(*command, target_nodes=node)
        try:
            results: list[Any] = await pipe.execute(allow_redirections=False)
        except RedisError:
            self._topology_stale = True
            raise
        return results

    async def _refresh_topology(self) -> None:
        # One refresh at a time, before commands are sent: redis-py's lazy first load, run
        # by many concurrent first commands, can disconnect a connection another command is
        # still setting up (seen with redis-py 8.1).
        if self._loaded and not self._topology_stale:
            return
        async with self._topology_lock:
            if not self._loaded:
                await self._cluster.initialize()
                self._loaded = True
            elif self._topology_stale:
                await self._cluster.nodes_manager.initialize()
            self._topology_stale = False


def _bytes_or_none(value: object) -> bytes | None:
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _tls_kwargs(options: ConnectOptions) -> dict[str, Any]:
    return {
        "ssl_ca_certs": options.ca_file or None,
        "ssl_certfile": options.cert_file or None,
        "ssl_keyfile": options.key_file or None,
        "ssl_cert_reqs": "required",
    }


def _common_kwargs(options: ConnectOptions) -> dict[str, Any]:
    return {
        "socket_timeout": options.socket_timeout_s,
        "socket_connect_timeout": options.connect_timeout_s,
        "retry": _no_retry(),
        "health_check_interval": 0,
        # RESP2: every Redis speaks it, and with RESP3 redis-py skips its check for
        # connections the server closed, so each stale pooled connection would fail one
        # request after a Redis restart.
        "protocol": 2,
    }


def _standalone_client(target: RedisTarget, options: ConnectOptions) -> Redis:
    ((host, port),) = target.nodes
    kwargs = _common_kwargs(options)
    if target.tls:
        kwargs.update(_tls_kwargs(options))
    pool = BlockingConnectionPool(
        connection_class=SSLConnection if target.tls else Connection,
        host=host,
        port=port,
        db=target.db,
        username=options.username,
        password=options.password,
        max_connections=options.max_connections + 1,  # one spare for ping() under load
        timeout=options.connect_timeout_s,
        **kwargs,
    )
    return Redis.from_pool(pool)


def _sentinel_client(target: RedisTarget, options: ConnectOptions) -> tuple[Redis, Sentinel]:
    sentinel_kwargs = _common_kwargs(options)
    sentinel_kwargs.update(username=options.sentinel_username, password=options.sentinel_password)
    master_kwargs = _common_kwargs(options)
    if target.tls:
        sentinel_kwargs.update(ssl=True, **_tls_kwargs(options))
        master_kwargs.update(ssl=True, **_tls_kwargs(options))
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
    client: Redis = sentinel.master_for(
        target.service_name,
        connection_pool_class=SentinelConnectionPool,
        db=target.db,
        username=options.username,
        password=options.password,
        max_connections=options.max_connections + 1,
        **master_kwargs,
    )
    return client, sentinel


def _cluster_client(target: RedisTarget, options: ConnectOptions) -> RedisCluster:
    kwargs = _common_kwargs(options)
    if target.tls:
        kwargs.update(ssl=True, **_tls_kwargs(options))
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=options.username,
        password=options.password,
        max_connections=options.max_connections + 1,
        require_full_coverage=True,
        **kwargs,
    )
