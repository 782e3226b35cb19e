"""The replay store's Redis commands: to a standalone Redis, the master a Sentinel set-up names,
or the master of a key's slot in a Redis Cluster, through the lean RESP client
(:mod:`verifier.replay.resp_protocol`), with a bounded pool of connections shared by every thread.

Each step's commands are pipelined on ONE connection (``WAIT`` counts that connection's last
write). No retries here; :class:`~verifier.replay.redis_store.RedisReplayStore` retries,
safely. Every call blocks the calling thread until its replies or its deadline.
"""

from __future__ import annotations

import collections
import ssl
import threading
import time
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from verifier.domain.ports import ReplayStoreUnavailable
from verifier.replay.resp_protocol import (
    Reply,
    RespConnection,
    RespConnectionError,
    RespEndpoint,
    RespError,
    encode_command,
    encode_get,
    encode_set_nx_px,
)

_PING = encode_command(b"PING")


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """``WAIT replicas timeout_ms`` after each recorded proof: see docs/replay.md."""

    replicas: int
    timeout_ms: int


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ConnectOptions:
    """How to open connections. Credentials and TLS files come from settings, never the CLI;
    ``repr`` shows none of them."""

    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    socket_timeout_s: float = 0.05
    connect_timeout_s: float = 0.05


class BlockingStandalone:
    """One standalone Redis (``redis://`` / ``rediss://``).

    At most ``max_connections`` calls are in flight at once, one connection each: the pool
    holds that many slots, each with a connection opened on first use; a call takes a slot
    (most recently used first, see :meth:`acquire`) and gives it back. A failed connection
    closes itself, so a retry on the same slot connects afresh; after a connection error
    (refused, reset, closed) every other connection opened before it is reopened before its
    next use, since after a Redis restart they are all stale. Thread-safe; taking and giving
    back a slot takes no lock unless callers are waiting for one.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int,
        tls: bool,
        options: ConnectOptions,
        max_connections: int,
    ) -> None:
        self._host = host
        self._port = port
        self._db = db
        self._tls = tls
        self._options = options
        self._endpoint: RespEndpoint | None = None
        self._endpoint_lock = threading.Lock()
        self._idle = collections.deque(self._new_slot() for _ in range(max_connections))
        self._given_back = threading.Condition(threading.Lock())
        self._waiting = 0
        self._generation = 0
        """Bumped by each connection error; a slot's connection from before it is reopened."""
        self._closed = False
        self._wait_payloads: dict[WaitPolicy, bytes] = {}

    def acquire(self, timeout_s: float) -> Slot | None:
        """A free slot, waiting up to ``timeout_s`` for one; None if none was given back in
        time. Give it back with :meth:`release`."""
        try:
            return self._idle.pop()
        except IndexError:
            pass
        deadline = time.monotonic() + timeout_s
        with self._given_back:
            # Counted before looking again: release() then either sees a waiter and notifies,
            # or gave its slot back before this second look.
            self._waiting += 1
            try:
                while True:
                    try:
                        return self._idle.pop()
                    except IndexError:
                        pass
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._given_back.wait(remaining)
            finally:
                self._waiting -= 1

    def release(self, slot: Slot) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        if self._closed:
            slot.close_connections()
        self._idle.append(slot)
        if self._waiting:
            with self._given_back:
                self._given_back.notify()

    def set_nx(
        self,
        slot: Slot,
        key: bytes,
        value: bytes,
        ttl_ms: int,
        wait: WaitPolicy | None,
        deadline: float,
    ) -> tuple[bool, int | None]:
        """``SET key value NX PX ttl_ms`` [+ ``WAIT``]: (was set, replicas acknowledged)."""
        command = encode_set_nx_px(key, value, ttl_ms)
        if wait is None:
            (was_set,) = self._call(slot, key, (command,), None, deadline)
            return was_set is not None, None
        was_set, acks = self._call(slot, key, (command,), self._wait_payload(wait), deadline)
        return was_set is not None, _integer(acks)

    def set_nx_then_get(
        self, slot: Slot, key: bytes, value: bytes, ttl_ms: int, deadline: float
    ) -> bytes | None:
        """``SET key value NX PX ttl_ms`` then ``GET key``: the value now stored."""
        commands = (encode_set_nx_px(key, value, ttl_ms), encode_get(key))
        _, stored = self._call(slot, key, commands, None, deadline)
        if stored is not None and not isinstance(stored, bytes):
            raise RespConnectionError("protocol error: GET answered a non-string")
        return stored

    def rewrite_and_wait(
        self, slot: Slot, key: bytes, value: bytes, wait: WaitPolicy, deadline: float
    ) -> int | None:
        """``SET key value XX KEEPTTL`` + ``WAIT``: replicas acknowledged, None if key gone."""
        command = encode_command(b"SET", key, value, b"XX", b"KEEPTTL")
        rewritten, acks = self._call(slot, key, (command,), self._wait_payload(wait), deadline)
        return _integer(acks) if rewritten is not None else None

    def ping(self, slot: Slot, wait: WaitPolicy | None, deadline: float) -> bool:
        """``PING`` [+ ``WAIT``] on ``slot``'s connection: True when Redis answers ``PONG`` (and
        ``WAIT`` counts at least ``wait.replicas`` replicas). Raises like the other commands."""
        if self._closed:
            raise ReplayStoreUnavailable("redis replay store closed")
        return self._ping(self._slot_connection(slot, deadline), wait, deadline)

    def close(self) -> None:
        """Close every idle connection; one in use is closed when its call gives it back.
        Later calls fail with :class:`ReplayStoreUnavailable`."""
        self._closed = True
        for slot in list(self._idle):
            slot.close_connections()

    def _new_slot(self) -> Slot:
        return Slot()

    def _call(
        self,
        slot: Slot,
        key: bytes,
        keyed: tuple[bytes, ...],
        wait: bytes | None,
        deadline: float,
    ) -> list[Reply]:
        """Send the ``keyed`` commands (all on ``key``), then ``wait`` if any, pipelined on one
        connection, and read every reply."""
        payload = b"".join(keyed) + wait if wait is not None else b"".join(keyed)
        return self._send(slot, key, payload, len(keyed) + (wait is not None), deadline)

    def _send(
        self, slot: Slot, key: bytes, payload: bytes, replies: int, deadline: float
    ) -> list[Reply]:
        if self._closed:
            raise ReplayStoreUnavailable("redis replay store closed")
        return self._exchange(self._connection(slot, key, deadline), payload, replies, deadline)

    def _exchange(
        self, connection: RespConnection, payload: bytes, replies: int, deadline: float
    ) -> list[Reply]:
        try:
            return connection.call(payload, replies, deadline)
        except RespConnectionError:
            self._connection_failed()
            raise

    def _ping(self, connection: RespConnection, wait: WaitPolicy | None, deadline: float) -> bool:
        if wait is None:
            (pong,) = self._exchange(connection, _PING, 1, deadline)
            return pong == b"PONG"
        # WAIT counts the replicas that acknowledged this connection's last write: every
        # connected replica when it wrote nothing, or when they have caught up with it.
        pong, replicas = self._exchange(connection, _PING + self._wait_payload(wait), 2, deadline)
        return pong == b"PONG" and _integer(replicas) >= wait.replicas

    def _connection(self, slot: Slot, key: bytes, deadline: float) -> RespConnection:
        """The connection of ``slot`` to use for ``key``."""
        return self._slot_connection(slot, deadline)

    def _slot_connection(self, slot: Slot, deadline: float) -> RespConnection:
        """The connection of ``slot`` (reopened if it predates a connection error)."""
        connection = slot.connection
        if connection is None:
            connection = slot.connection = RespConnection(self._get_endpoint(deadline))
        elif slot.generation != self._generation:
            connection.close()  # opened before a connection error: likely stale
            connection = slot.connection = RespConnection(self._get_endpoint(deadline))
        if not connection.connected:
            slot.generation = self._generation
        return connection

    def _connection_failed(self) -> None:
        """A connection error: every connection opened before it is reopened before reuse."""
        self._generation += 1

    def _wait_payload(self, wait: WaitPolicy) -> bytes:
        payload = self._wait_payloads.get(wait)
        if payload is None:
            payload = encode_command(b"WAIT", b"%d" % wait.replicas, b"%d" % wait.timeout_ms)
            self._wait_payloads[wait] = payload
        return payload

    def _get_endpoint(self, deadline: float) -> RespEndpoint:
        # Built on first use, not at start-up, like redis-py's pool: unreadable TLS files make
        # calls fail closed (and health report it) instead of preventing start-up.
        if self._endpoint is not None:
            return self._endpoint
        with self._endpoint_lock:
            if self._endpoint is None:
                self._endpoint = self._endpoint_for(self._host, self._port)
            return self._endpoint

    def _endpoint_for(self, host: str, port: int) -> RespEndpoint:
        options = self._options
        return RespEndpoint(
            host=host,
            port=port,
            username=options.username,
            password=options.password,
            db=self._db,
            ssl_context=self._ssl_context() if self._tls else None,
            connect_timeout_s=options.connect_timeout_s,
            socket_timeout_s=options.socket_timeout_s,
        )

    def _ssl_context(self) -> ssl.SSLContext:
        options = self._options
        try:
            context = ssl.create_default_context(cafile=options.ca_file or None)
            if options.cert_file:
                context.load_cert_chain(options.cert_file, options.key_file or None)
        except (OSError, ValueError) as exc:
            raise RespConnectionError(f"TLS files unusable: {type(exc).__name__}") from exc
        return context


class BlockingSentinel(BlockingStandalone):
    """The master of a Sentinel set-up (``redis+sentinel://``, ``rediss+sentinel://``). With
    TLS, the sentinels and the master are reached over TLS with the same files (as redis-py's
    sentinel client does), each server's certificate checked against the address it is reached
    at.

    The master's address is asked of the sentinels, in turn, with ``SENTINEL MASTER <name>`` and
    accepted as redis-py accepts it: flagged ``master`` and neither subjectively nor objectively
    down (``s_down``, ``o_down``); the sentinel that answered is asked first next time. It is
    asked when the first connection opens and again after a connection error, or after a
    ``READONLY`` or ``MASTERDOWN`` reply (a failover demoted the server this pool writes to):
    every connection is then reopened, to the master the sentinels name by then, and that reply
    counts as a connection error, which the store retries like redis-py's sentinel client does.
    No sentinel naming a master is a connection error too: the call fails closed.
    """

    def __init__(
        self,
        sentinels: tuple[tuple[str, int], ...],
        service_name: str,
        *,
        db: int,
        tls: bool,
        options: ConnectOptions,
        max_connections: int,
    ) -> None:
        super().__init__("", 0, db=db, tls=tls, options=options, max_connections=max_connections)
        self._sentinels = list(sentinels)
        self._service_name = service_name.encode("utf-8")

    def _get_endpoint(self, deadline: float) -> RespEndpoint:
        endpoint = self._endpoint
        if endpoint is not None:
            return endpoint
        with self._endpoint_lock:
            if self._endpoint is None:
                self._endpoint = self._endpoint_for(*self._discover_master(deadline))
            return self._endpoint

    def _exchange(
        self, connection: RespConnection, payload: bytes, replies: int, deadline: float
    ) -> list[Reply]:
        try:
            return super()._exchange(connection, payload, replies, deadline)
        except RespError as exc:
            if exc.code not in ("READONLY", "MASTERDOWN"):
                raise
            self._connection_failed()
            raise RespConnectionError(f"no longer the master: {exc}") from exc

    def _connection_failed(self) -> None:
        self._endpoint = None  # ask the sentinels again before the next connection
        super()._connection_failed()

    def _discover_master(self, deadline: float) -> tuple[str, int]:
        options = self._options
        query = encode_command(b"SENTINEL", b"MASTER", self._service_name)
        ssl_context = self._ssl_context() if self._tls else None
        for index, (host, port) in enumerate(self._sentinels):
            sentinel = RespConnection(
                RespEndpoint(
                    host=host,
                    port=port,
                    username=options.sentinel_username,
                    password=options.sentinel_password,
                    ssl_context=ssl_context,
                    connect_timeout_s=options.connect_timeout_s,
                    socket_timeout_s=options.socket_timeout_s,
                )
            )
            try:
                (reply,) = sentinel.call(query, 1, deadline)
            except (RespError, RespConnectionError, OSError):
                continue  # this sentinel is down or does not know the name: ask the next
            finally:
                sentinel.close()
            master = _usable_master(reply)
            if master is not None:
                if index:  # redis-py's order too: the sentinel that answered goes first
                    self._sentinels.insert(0, self._sentinels.pop(index))
                return master
        raise RespConnectionError(
            f"no sentinel names a usable master for {self._service_name.decode()!r}"
        )


def _usable_master(reply: Reply) -> tuple[str, int] | None:
    """``ip`` and ``port`` of a ``SENTINEL MASTER`` reply that describes a usable master."""
    if not isinstance(reply, list) or len(reply) % 2:
        return None
    fields = dict(zip(reply[::2], reply[1::2], strict=True))
    flags = fields.get(b"flags")
    ip, port = fields.get(b"ip"), fields.get(b"port")
    if not isinstance(flags, bytes) or not isinstance(ip, bytes) or not isinstance(port, bytes):
        return None
    states = set(flags.split(b","))
    if b"master" not in states or states & {b"s_down", b"o_down"}:
        return None
    try:
        return ip.decode("ascii"), int(port)
    except (UnicodeDecodeError, ValueError):
        return None


class Slot:
    """One of the pool's places: its connection (made on first use) and the generation of
    connection errors it was opened in."""

    __slots__ = ("connection", "generation")

    def __init__(self) -> None:
        self.connection: RespConnection | None = None
        self.generation = 0

    def close_connections(self) -> None:
        if self.connection is not None:
            self.connection.close()


CLUSTER_SLOTS = REDIS_CLUSTER_HASH_SLOTS
"""Redis Cluster's hash slots; a key's slot is :func:`key_slot` (redis-py's: CRC16 of the key
or of its hash tag, mod 16384)."""


class BlockingCluster(BlockingStandalone):
    """The masters of a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``).

    The slot map comes from ``CLUSTER SLOTS``, asked of the seed nodes (then of every master
    known) on first use and again after a connection error or a ``MOVED`` reply; each key's
    commands go to the master of its slot, all on one connection (``WAIT`` counts that
    connection's writes). A slot of the pool holds one connection per master it has talked to.
    ``MOVED`` (the map is out of date) counts as a connection error, so the store's safe retry
    runs on the master the new map names. ``ASK`` (the slot is being migrated and the key is
    not on the old master) is followed once, as redis-py follows it: the same commands, each
    keyed one after ``ASKING``, to the node named; a command ``ASK`` redirected was not run.
    :meth:`ping` asks every master of the map (loading it if needed); a slot that no master
    serves makes it False.
    """

    def __init__(
        self,
        seeds: tuple[tuple[str, int], ...],
        *,
        tls: bool,
        options: ConnectOptions,
        max_connections: int,
    ) -> None:
        super().__init__("", 0, db=0, tls=tls, options=options, max_connections=max_connections)
        self._seeds = list(seeds)
        self._owners: list[tuple[str, int] | None] | None = None
        """Slot -> the address of its master; None until loaded (and after MOVED)."""
        self._topology_lock = threading.Lock()
        self._endpoints: dict[tuple[str, int], RespEndpoint] = {}

    def _new_slot(self) -> Slot:
        return ClusterSlot()

    def ping(self, slot: Slot, wait: WaitPolicy | None, deadline: float) -> bool:
        """``PING`` [+ ``WAIT``] to every master, one after the other on ``slot``'s connections:
        True when each answers (with enough replicas) and every slot has a master."""
        if self._closed:
            raise ReplayStoreUnavailable("redis replay store closed")
        assert isinstance(slot, ClusterSlot)
        owners = self._slot_owners(deadline)
        if None in owners:
            return False
        masters = {owner for owner in owners if owner is not None}
        return all(self._ping(self._node_connection(slot, m), wait, deadline) for m in masters)

    def _call(
        self,
        slot: Slot,
        key: bytes,
        keyed: tuple[bytes, ...],
        wait: bytes | None,
        deadline: float,
    ) -> list[Reply]:
        try:
            return super()._call(slot, key, keyed, wait, deadline)
        except RespError as exc:
            redirect = str(exc)
            if exc.code == "MOVED":
                self._owners = None  # reload the map before the next command
                raise RespConnectionError(f"slot moved: {redirect}") from exc
            if exc.code != "ASK":
                raise
        # ASK: the slot is migrating and the key is not on the master we asked; no command
        # of ours ran there (a WAIT may have, harmlessly). Once, to the node named.
        node = _redirect_target(redirect)
        asking = encode_command(b"ASKING")
        payload = b"".join(asking + command for command in keyed) + (wait or b"")
        assert isinstance(slot, ClusterSlot)
        connection = self._node_connection(slot, node)
        try:
            replies = self._exchange(
                connection, payload, 2 * len(keyed) + (wait is not None), deadline
            )
        except RespError as exc:
            raise RespConnectionError(f"redirected command failed: {exc}") from exc
        keyed_replies = replies[1 : 2 * len(keyed) : 2]  # each ASKING answered +OK first
        return [*keyed_replies, *replies[2 * len(keyed) :]]

    def _connection(self, slot: Slot, key: bytes, deadline: float) -> RespConnection:
        assert isinstance(slot, ClusterSlot)
        return self._node_connection(slot, self._owner(key_slot(key), deadline))

    def _node_connection(self, slot: ClusterSlot, node: tuple[str, int]) -> RespConnection:
        if slot.generation != self._generation:
            slot.close_connections()  # opened before a connection error: likely stale
            slot.by_node.clear()
            slot.generation = self._generation
        connection = slot.by_node.get(node)
        if connection is None:
            endpoint = self._endpoints.get(node)
            if endpoint is None:
                endpoint = self._endpoints[node] = self._endpoint_for(*node)
            connection = slot.by_node[node] = RespConnection(endpoint)
        return connection

    def _connection_failed(self) -> None:
        self._owners = None  # a master may have failed over: reload the map
        super()._connection_failed()

    def _owner(self, slot_number: int, deadline: float) -> tuple[str, int]:
        owner = self._slot_owners(deadline)[slot_number]
        if owner is None:
            raise RespConnectionError(f"no master serves slot {slot_number}")
        return owner

    def _slot_owners(self, deadline: float) -> list[tuple[str, int] | None]:
        """The slot map, loaded first if there is none."""
        owners = self._owners
        if owners is None:
            with self._topology_lock:
                owners = self._owners
                if owners is None:
                    owners = self._owners = self._load_slot_map(deadline)
        return owners

    def _load_slot_map(self, deadline: float) -> list[tuple[str, int] | None]:
        query = encode_command(b"CLUSTER", b"SLOTS")
        known = list(dict.fromkeys([*self._seeds, *self._endpoints]))
        for host, port in known:
            connection = RespConnection(self._endpoint_for(host, port))
            try:
                (reply,) = connection.call(query, 1, deadline)
            except (RespError, RespConnectionError, OSError):
                continue  # this node is down or not a cluster node: ask the next
            finally:
                connection.close()
            owners = _slot_map(reply, host)
            if owners is not None:
                return owners
        raise RespConnectionError("no cluster node answered CLUSTER SLOTS")


def _slot_map(reply: Reply, asked_host: str) -> list[tuple[str, int] | None] | None:
    """Slot -> master address from a ``CLUSTER SLOTS`` reply; None if it is not one. An empty
    address means the node asked (``asked_host``)."""
    if not isinstance(reply, list):
        return None
    owners: list[tuple[str, int] | None] = [None] * CLUSTER_SLOTS
    for entry in reply:
        if not isinstance(entry, list) or len(entry) < 3:
            return None
        start, end, master = entry[0], entry[1], entry[2]
        if not isinstance(start, int) or not isinstance(end, int) or not isinstance(master, list):
            return None
        if not 0 <= start <= end < CLUSTER_SLOTS or len(master) < 2:
            return None
        host, port = master[0], master[1]
        if not isinstance(host, bytes) or not isinstance(port, int):
            return None
        address = (host.decode("ascii", "replace") or asked_host, port)
        owners[start : end + 1] = [address] * (end - start + 1)
    return owners


def _redirect_target(redirect: str) -> tuple[str, int]:
    """The node of a ``MOVED``/``ASK`` error: ``ASK 3999 127.0.0.1:6381`` -> (host, port)."""
    parts = redirect.split()
    if len(parts) != 3:
        raise RespConnectionError(f"protocol error: {redirect!r}")
    host, _, port = parts[2].rpartition(":")
    try:
        return host, int(port)
    except ValueError:
        raise RespConnectionError(f"protocol error: {redirect!r}") from None


class ClusterSlot(Slot):
    """A pool slot of a cluster: one connection per master it has talked to."""

    __slots__ = ("by_node",)

    def __init__(self) -> None:
        super().__init__()
        self.by_node: dict[tuple[str, int], RespConnection] = {}

    def close_connections(self) -> None:
        for connection in self.by_node.values():
            connection.close()


def _integer(reply: Reply) -> int:
    if not isinstance(reply, int):
        raise RespConnectionError("protocol error: WAIT answered a non-integer")
    return reply
