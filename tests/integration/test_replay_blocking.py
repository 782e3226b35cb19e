"""RedisReplayStore.first_use_blocking (worker threads, lean RESP client) against real
redis-server processes: atomicity across threads, stores and the async path, expiry, outages,
the shared breaker, safe retries, ACL, TLS, WAIT, error replies."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support import redis_topologies as topologies
from tests.support.lossy_proxy import ReplyLosingProxy
from tests.support.net import free_port
from tests.support.redis_server import RedisServer, missing_redis_binaries
from tests.support.redis_topologies import wait_until
from tests.support.threads import race_in_threads as race
from tests.support.tls_files import (
    TLS_PROBLEMS,
    assert_blocking_fails_closed,
    client_options,
    make_redis_tls,
)
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable
from verifier.replay.breaker import BreakerState, CircuitBreaker

TTL_S = 60.0
T = TypeVar("T")


@pytest.fixture(scope="module", autouse=True)
def _redis_installed() -> None:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


class IoLoop:
    """An asyncio loop on a thread of its own, as the service's io loop: the store's async
    path (redis-py, bound to one loop) runs there while test threads use the blocking path."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


_io: IoLoop | None = None


@pytest.fixture(scope="module", autouse=True)
def _io_loop() -> Iterator[None]:
    global _io
    _io = IoLoop()
    try:
        yield
    finally:
        _io.close()
        _io = None


def on_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    assert _io is not None
    return _io.run(coroutine)


@contextlib.contextmanager
def store_for(url: str, **options: Any) -> Iterator[RedisReplayStore]:
    store = RedisReplayStore.from_url(url, **options)
    assert store.blocking_supported
    try:
        yield store
    finally:
        on_loop(store.close())


def unavailable_calls(store: RedisReplayStore, count: int, slowest: list[float]) -> float:
    """``count`` calls that must all raise ReplayStoreUnavailable; total seconds taken.
    Appends the slowest single call's duration to ``slowest``."""
    started = time.monotonic()
    worst = 0.0
    for i in range(count):
        call_started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use_blocking(b"outage-%d" % i, TTL_S)
        worst = max(worst, time.monotonic() - call_started)
    slowest.append(worst)
    return time.monotonic() - started


# --- Semantics shared with the async path ------------------------------------------------------


def test_first_use_then_replay_with_the_same_keys_as_the_async_path(
    redis_server: RedisServer,
) -> None:
    with store_for(redis_server.url, key_prefix=b"tenant:") as store:
        assert store.first_use_blocking(b"\xab\xcd", 30)
        assert not store.first_use_blocking(b"\xab\xcd", 30)
        assert not on_loop(store.first_use(b"\xab\xcd", 30))
        assert on_loop(store.first_use(b"\x01", 30))
        assert not store.first_use_blocking(b"\x01", 30)
    assert redis_server.cli("--scan", "--pattern", "*").split() in (
        ["tenant:abcd", "tenant:01"],
        ["tenant:01", "tenant:abcd"],
    )
    assert 29_000 < int(redis_server.cli("PTTL", "tenant:abcd")) <= 30_000


def test_database_number_is_selected(redis_server: RedisServer) -> None:
    with store_for(redis_server.url.replace("/0", "/3")) as store:
        assert store.first_use_blocking(b"db", TTL_S)
    assert redis_server.cli("-n", "3", "EXISTS", "dpop:jti:6462") == "1"
    assert redis_server.cli("-n", "0", "EXISTS", "dpop:jti:6462") == "0"


def test_key_expires_after_its_ttl(redis_server: RedisServer) -> None:
    with store_for(redis_server.url) as store:
        assert store.first_use_blocking(b"short", 0.1)
        assert not store.first_use_blocking(b"short", 0.1)
        time.sleep(0.3)
        assert store.first_use_blocking(b"short", 0.1)
        with pytest.raises(ValueError):
            store.first_use_blocking(b"short", 0)


def test_200_threads_one_store_one_true(redis_server: RedisServer) -> None:
    # Generous timeouts: this checks atomicity, not latency, on a possibly busy CI machine.
    with store_for(redis_server.url, timeout_s=2.0, max_connections=16) as store:
        for round_ in range(3):
            key = b"same-%d" % round_
            results = race([partial(store.first_use_blocking, key, TTL_S)] * 200)
            assert results.count(True) == 1
            assert results.count(False) == 199


def test_200_threads_two_stores_sharing_redis_one_true(redis_server: RedisServer) -> None:
    with (
        store_for(redis_server.url, timeout_s=2.0) as one,
        store_for(redis_server.url, timeout_s=2.0) as two,
    ):
        calls = [partial(s.first_use_blocking, b"shared", TTL_S) for s in (one, two)] * 110
        results = race(calls)
    assert results.count(True) == 1
    assert results.count(False) == 219


async def test_blocking_and_async_calls_mixed_on_one_key(redis_server: RedisServer) -> None:
    store = RedisReplayStore.from_url(redis_server.url, timeout_s=2.0)
    loop = asyncio.get_running_loop()
    try:
        with ThreadPoolExecutor(max_workers=100) as threads:
            for round_ in range(3):
                key = b"mixed-%d" % round_
                blocking = [
                    loop.run_in_executor(threads, store.first_use_blocking, key, TTL_S)
                    for _ in range(100)
                ]
                on_loop = [store.first_use(key, TTL_S) for _ in range(100)]
                results = await asyncio.gather(*blocking, *on_loop)
                assert results.count(True) == 1
                assert results.count(False) == 199
    finally:
        await store.close()


def test_close_closes_the_blocking_connections(redis_server: RedisServer) -> None:
    with store_for(redis_server.url, timeout_s=2.0) as store:
        race([partial(store.first_use_blocking, b"%d" % i, TTL_S) for i in range(20)])
        assert len(redis_server.cli("CLIENT", "LIST").splitlines()) > 2
    # Only redis-cli's own connection is left.
    assert len(redis_server.cli("CLIENT", "LIST").splitlines()) == 1
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use_blocking(b"after-close", TTL_S)


def test_every_redis_mode_has_a_blocking_path_that_fails_closed_when_unreachable() -> None:
    # Sentinel and Cluster against real servers: test_replay_{sentinel,cluster}_blocking.py.
    for url in (
        f"redis://127.0.0.1:{free_port()}",
        f"redis+sentinel://127.0.0.1:{free_port()}/m",
        f"rediss+sentinel://127.0.0.1:{free_port()}/m",
        f"redis+cluster://127.0.0.1:{free_port()}",
        f"rediss+cluster://127.0.0.1:{free_port()}",
    ):
        store = RedisReplayStore.from_url(url, timeout_s=0.5)
        assert store.blocking_supported
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use_blocking(b"k", TTL_S)  # nothing listens there
        on_loop(store.close())


# --- Outages, deadline, breaker -----------------------------------------------------------------


def test_killed_redis_fails_closed_within_the_deadline_and_recovers(
    redis_server: RedisServer,
) -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown_s=0.2)
    with store_for(redis_server.url, timeout_s=0.05, breaker=breaker) as store:
        race([partial(store.first_use_blocking, b"warm-%d" % i, TTL_S) for i in range(10)])
        redis_server.kill()
        slowest: list[float] = []
        assert unavailable_calls(store, 20, slowest) < 1.0
        assert slowest[0] < 0.5
        assert breaker.state is BreakerState.OPEN
        redis_server.restart()
        time.sleep(0.3)  # past the breaker's cool-down
        # Every pooled connection is stale; the first call's retry reconnects.
        assert store.first_use_blocking(b"after", TTL_S)
        assert breaker.state is BreakerState.CLOSED
        assert not store.first_use_blocking(b"after", TTL_S)
        results = race([partial(store.first_use_blocking, b"new-%d" % i, TTL_S) for i in range(10)])
        assert results == [True] * 10


def test_paused_redis_times_out_per_call_and_the_breaker_opens_and_closes(
    redis_server: RedisServer,
) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=0.3)
    with store_for(redis_server.url, timeout_s=0.1, breaker=breaker) as store:
        assert store.first_use_blocking(b"before", TTL_S)
        redis_server.pause()
        try:
            slowest: list[float] = []
            # 3 timeouts of ~100 ms open the breaker; the other 17 calls fail at once.
            assert unavailable_calls(store, 20, slowest) < 1.5
            assert slowest[0] < 0.6  # one deadline, with room for a busy machine
            assert breaker.state is BreakerState.OPEN
            # The same breaker guards the async path.
            with pytest.raises(ReplayStoreUnavailable):
                on_loop(store.first_use(b"async-refused", TTL_S))
        finally:
            redis_server.resume()
        time.sleep(0.4)  # past the cool-down: one probe goes through and closes it
        assert store.first_use_blocking(b"after", TTL_S)
        assert breaker.state is BreakerState.CLOSED
        assert not store.first_use_blocking(b"before", TTL_S)


def test_queue_timeouts_fail_closed_without_opening_the_breaker(
    redis_server: RedisServer,
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=60)
    with store_for(
        redis_server.url, timeout_s=0.3, max_connections=1, queue_timeout_s=0.05, breaker=breaker
    ) as store:
        redis_server.pause()
        try:
            results = race([partial(store.first_use_blocking, b"%d" % i, TTL_S) for i in range(4)])
        finally:
            redis_server.resume()
        assert all(isinstance(result, ReplayStoreUnavailable) for result in results)
        # One Redis timeout is below the threshold; the three queue timeouts did not count.
        assert breaker.state is BreakerState.CLOSED
        assert store.first_use_blocking(b"after", TTL_S)


def test_a_burst_beyond_the_pool_queues_instead_of_failing(redis_server: RedisServer) -> None:
    with store_for(redis_server.url, timeout_s=1.0, max_connections=2) as store:
        results = race([partial(store.first_use_blocking, b"%d" % i, TTL_S) for i in range(100)])
    assert results == [True] * 100


# --- Retries: a lost reply is never a false replay ---------------------------------------------


async def test_a_retry_after_a_lost_reply_recognises_its_own_write(
    redis_server: RedisServer,
) -> None:
    async with ReplyLosingProxy(redis_server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        store = RedisReplayStore.from_url(url, timeout_s=1.0, retries=1)
        try:
            assert await asyncio.to_thread(store.first_use_blocking, b"warm-up", TTL_S)
            proxy.lose_next_reply()
            # SET NX ran in Redis, its reply was lost, the retry found our own token.
            assert await asyncio.to_thread(store.first_use_blocking, b"proof", TTL_S)
            assert proxy.replies_lost == 1
            assert not await asyncio.to_thread(store.first_use_blocking, b"proof", TTL_S)
            assert not await store.first_use(b"proof", TTL_S)
        finally:
            await store.close()


async def test_without_retries_a_lost_reply_fails_closed(redis_server: RedisServer) -> None:
    async with ReplyLosingProxy(redis_server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        store = RedisReplayStore.from_url(url, timeout_s=1.0, retries=0)
        try:
            assert await asyncio.to_thread(store.first_use_blocking, b"warm-up", TTL_S)
            proxy.lose_next_reply()
            with pytest.raises(ReplayStoreUnavailable):
                await asyncio.to_thread(store.first_use_blocking, b"proof", TTL_S)
            # The write did land: the same proof is now a replay (never accepted twice).
            assert not await asyncio.to_thread(store.first_use_blocking, b"proof", TTL_S)
        finally:
            await store.close()


# --- ACL, error replies --------------------------------------------------------------------------


def test_least_privilege_acl_user(redis_server: RedisServer) -> None:
    redis_server.cli(
        "ACL", "SETUSER", "dpop", "on", ">pw", "resetkeys", "~dpop:jti:*",
        "-@all", "+set", "+get", "+wait", "+ping",
    )  # fmt: skip
    redis_server.cli("ACL", "SETUSER", "default", "off")
    with store_for(redis_server.url, username="dpop", password="pw") as store:
        assert store.first_use_blocking(b"acl", TTL_S)
        assert not store.first_use_blocking(b"acl", TTL_S)
    for username, password in (("dpop", "wrong"), (None, None), ("nobody", "pw")):
        with (
            store_for(redis_server.url, username=username, password=password) as store,
            pytest.raises(ReplayStoreUnavailable),
        ):
            store.first_use_blocking(b"k", TTL_S)


def test_password_without_a_user(redis_server: RedisServer) -> None:
    redis_server.cli("CONFIG", "SET", "requirepass", "s3cret")
    with store_for(redis_server.url, password="s3cret") as store:
        assert store.first_use_blocking(b"k", TTL_S)
    with (
        store_for(redis_server.url, password="wrong") as store,
        pytest.raises(ReplayStoreUnavailable),
    ):
        store.first_use_blocking(b"k2", TTL_S)


def test_an_error_reply_is_unavailable_and_counts_for_the_breaker(
    redis_server: RedisServer,
) -> None:
    # A user allowed everything but SET: Redis answers -NOPERM.
    redis_server.cli(
        "ACL", "SETUSER", "readonly", "on", ">pw", "~*", "+@all", "-set",
    )  # fmt: skip
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=60)
    with store_for(redis_server.url, username="readonly", password="pw", breaker=breaker) as store:
        for i in range(2):
            with pytest.raises(ReplayStoreUnavailable, match="NOPERM"):
                store.first_use_blocking(b"denied-%d" % i, TTL_S)
        assert breaker.state is BreakerState.OPEN


def test_a_renamed_set_command_is_unavailable() -> None:
    with (
        RedisServer(options={"rename-command": 'SET ""'}) as server,
        store_for(server.url) as store,
        pytest.raises(ReplayStoreUnavailable, match="unknown command"),
    ):
        store.first_use_blocking(b"k", TTL_S)


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    tls = make_redis_tls(tmp_path_factory.mktemp("redis-tls-blocking"))
    with RedisServer(tls=tls) as server:
        yield server


def test_tls_with_a_client_certificate(tls_redis: RedisServer) -> None:
    tls = tls_redis.tls
    assert tls is not None and tls_redis.url.startswith("rediss://")
    with store_for(tls_redis.url, timeout_s=1.0, **client_options(tls)) as store:
        results = race([partial(store.first_use_blocking, b"over-tls", TTL_S)] * 20)
        assert results.count(True) == 1
        assert not on_loop(store.first_use(b"over-tls", TTL_S))


@pytest.mark.parametrize("problem", TLS_PROBLEMS)
def test_tls_failures_fail_closed(tls_redis: RedisServer, tmp_path: Path, problem: str) -> None:
    assert tls_redis.tls is not None
    assert_blocking_fails_closed(tls_redis.url, tls_redis.tls, problem, tmp_path)


# --- WAIT for replicas ----------------------------------------------------------------------------


@pytest.fixture
def master_with_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    with topologies.master_with_replica() as servers:
        yield servers


def test_wait_for_a_replica_then_fail_closed_when_it_stops(
    master_with_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = master_with_replica
    # Redis expires a WAIT on its timer tick (1/hz, 100 ms by default), and a busy CI machine
    # may be slow to schedule the replica's acknowledgement: leave it ample room.
    with store_for(master.url, timeout_s=2.0, wait_replicas=1, wait_timeout_s=1.0) as store:
        assert store.first_use_blocking(b"replicated", TTL_S)
        # Acknowledged by the replica before first_use_blocking returned.
        assert replica.cli("EXISTS", "dpop:jti:" + b"replicated".hex()) == "1"
        assert not store.first_use_blocking(b"replicated", TTL_S)
        replica.stop()
        wait_until(
            lambda: "connected_slaves:0" in master.cli("INFO", "replication"),
            10,
            "the master to notice",
        )
        with pytest.raises(ReplayStoreUnavailable, match="0 of 1"):
            store.first_use_blocking(b"unreplicated", TTL_S)
        # The key stays on the master: the proof is never accepted later either.
        assert not store.first_use_blocking(b"unreplicated", TTL_S)


async def test_a_retried_write_is_still_waited_for(
    master_with_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = master_with_replica
    async with ReplyLosingProxy(master.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        store = RedisReplayStore.from_url(url, timeout_s=1.0, wait_replicas=1, wait_timeout_s=1.0)
        try:
            assert await asyncio.to_thread(store.first_use_blocking, b"warm-up", TTL_S)
            proxy.lose_next_reply()
            assert await asyncio.to_thread(store.first_use_blocking, b"retried-wait", TTL_S)
            assert proxy.replies_lost == 1
            assert replica.cli("EXISTS", "dpop:jti:" + b"retried-wait".hex()) == "1"
        finally:
            await store.close()


@pytest.fixture(autouse=True)
def _fast_thread_switching() -> Iterator[None]:
    """Switch threads often, so that races show up if there are any."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
