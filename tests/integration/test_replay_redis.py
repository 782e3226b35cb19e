"""RedisReplayStore against a real redis-server on loopback: atomicity, expiry, outages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.redis_server import RedisServer
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable, open_replay_store
from verifier.replay.breaker import BreakerState, CircuitBreaker

TTL_S = 60.0


@contextlib.asynccontextmanager
async def store_for(url: str, **options: Any) -> AsyncIterator[RedisReplayStore]:
    store = RedisReplayStore.from_url(url, **options)
    try:
        yield store
    finally:
        await store.close()


async def unavailable_calls(store: RedisReplayStore, count: int) -> float:
    """Make ``count`` calls that must all raise ReplayStoreUnavailable; the seconds taken."""
    started = time.monotonic()
    for i in range(count):
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"outage-%d" % i, TTL_S)
    return time.monotonic() - started


async def test_first_use_then_replay(redis_server: RedisServer) -> None:
    async with store_for(redis_server.url) as store:
        assert await store.first_use(b"\x01\x02", TTL_S)
        assert not await store.first_use(b"\x01\x02", TTL_S)
        assert await store.first_use(b"\x01\x03", TTL_S)


async def test_key_is_prefixed_hex_with_the_ttl_in_redis(redis_server: RedisServer) -> None:
    async with store_for(redis_server.url) as store:
        assert await store.first_use(b"\xab\xcd", 30)
    assert redis_server.cli("--scan", "--pattern", "*") == "dpop:jti:abcd"
    assert 29_000 < int(redis_server.cli("PTTL", "dpop:jti:abcd")) <= 30_000


async def test_custom_key_prefix(redis_server: RedisServer) -> None:
    async with store_for(redis_server.url, key_prefix=b"tenant-a:") as store:
        assert await store.first_use(b"\x00", TTL_S)
    assert redis_server.cli("--scan", "--pattern", "*") == "tenant-a:00"


async def test_key_expires_after_its_ttl(redis_server: RedisServer) -> None:
    async with store_for(redis_server.url) as store:
        assert await store.first_use(b"short", 0.1)
        assert not await store.first_use(b"short", 0.1)
        await asyncio.sleep(0.3)
        assert await store.first_use(b"short", 0.1)


async def test_concurrent_first_use_across_two_pools_sees_one_true(
    redis_server: RedisServer,
) -> None:
    # A generous timeout: this checks atomicity, not latency, on a possibly busy CI machine.
    async with (
        store_for(redis_server.url, timeout_s=2.0) as one,
        store_for(redis_server.url, timeout_s=2.0) as two,
    ):
        calls = [store.first_use(b"same-proof", TTL_S) for _ in range(100) for store in (one, two)]
        results = await asyncio.gather(*calls)
    assert len(results) == 200
    assert results.count(True) == 1


async def test_factory_opens_a_working_redis_store(redis_server: RedisServer) -> None:
    store = open_replay_store(
        redis_server.url, username=None, password=None, timeout_s=0.5, memory_max_entries=1
    )
    try:
        assert isinstance(store, RedisReplayStore)
        assert await store.ping()
        assert await store.first_use(b"k", TTL_S)
        assert not await store.first_use(b"k", TTL_S)
    finally:
        await store.close()


async def test_password_is_used_and_auth_errors_are_unavailable(
    redis_server: RedisServer,
) -> None:
    redis_server.cli("CONFIG", "SET", "requirepass", "s3cret")
    async with store_for(redis_server.url, password="s3cret", timeout_s=0.5) as store:
        assert await store.first_use(b"k", TTL_S)
    async with store_for(redis_server.url, password="wrong", timeout_s=0.5) as store:
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"k2", TTL_S)
        assert not await store.ping()
    async with store_for(redis_server.url, timeout_s=0.5) as store:
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"k3", TTL_S)


async def test_close_closes_every_connection(redis_server: RedisServer) -> None:
    async with store_for(redis_server.url, timeout_s=2.0) as store:
        await asyncio.gather(*(store.first_use(b"%d" % i, TTL_S) for i in range(20)))
        assert len(redis_server.cli("CLIENT", "LIST").splitlines()) > 2
    # Only redis-cli's own connection is left.
    assert len(redis_server.cli("CLIENT", "LIST").splitlines()) == 1


async def test_killed_redis_fails_closed_promptly(redis_server: RedisServer) -> None:
    async with store_for(redis_server.url) as store:
        assert await store.first_use(b"before", TTL_S)
        redis_server.kill()
        assert await unavailable_calls(store, 20) < 1.0
        assert not await store.ping()


async def test_restarted_redis_is_used_again_by_the_same_store(
    redis_server: RedisServer,
) -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown_s=0.2)
    async with store_for(redis_server.url, timeout_s=0.5, breaker=breaker) as store:
        # Several pooled connections, all of which go stale when the server dies.
        await asyncio.gather(*(store.first_use(b"warm-%d" % i, TTL_S) for i in range(10)))
        redis_server.kill()
        await unavailable_calls(store, 10)
        redis_server.restart()
        await asyncio.sleep(0.3)  # past the breaker's cool-down
        assert await store.ping()
        assert await store.first_use(b"after", TTL_S)
        assert not await store.first_use(b"after", TTL_S)
        results = await asyncio.gather(*(store.first_use(b"new-%d" % i, TTL_S) for i in range(10)))
        assert all(results)


async def test_paused_redis_times_out_promptly_and_recovers(redis_server: RedisServer) -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown_s=0.2)
    async with store_for(redis_server.url, timeout_s=0.05, breaker=breaker) as store:
        assert await store.first_use(b"before", TTL_S)
        redis_server.pause()
        try:
            # 5 timeouts of ~50 ms open the breaker; the other 15 calls fail at once.
            assert await unavailable_calls(store, 20) < 1.0
            started = time.monotonic()
            assert not await store.ping()
            assert time.monotonic() - started < 0.5
        finally:
            redis_server.resume()
        await asyncio.sleep(0.3)  # past the breaker's cool-down
        assert await store.first_use(b"after", TTL_S)
        assert not await store.first_use(b"after", TTL_S)
        assert not await store.first_use(b"before", TTL_S)


async def test_open_breaker_does_not_touch_redis(redis_server: RedisServer) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=60)
    async with store_for(redis_server.url, breaker=breaker) as store:
        redis_server.kill()
        await unavailable_calls(store, 1)
        redis_server.restart()
        # Redis is back, but the breaker is still cooling down: refused without a call.
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"k", TTL_S)
        assert await store.ping()  # health checks bypass the breaker


async def test_a_burst_beyond_the_pool_queues_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    async with store_for(redis_server.url, timeout_s=1.0, max_connections=4) as store:
        results = await asyncio.gather(*(store.first_use(b"%d" % i, TTL_S) for i in range(300)))
    assert all(results)


async def test_queue_timeouts_fail_closed_without_opening_the_breaker(
    redis_server: RedisServer,
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=60)
    async with store_for(
        redis_server.url, timeout_s=0.3, max_connections=1, queue_timeout_s=0.05, breaker=breaker
    ) as store:
        redis_server.pause()
        try:
            results = await asyncio.gather(
                *(store.first_use(b"%d" % i, TTL_S) for i in range(4)), return_exceptions=True
            )
        finally:
            redis_server.resume()
        assert all(isinstance(result, ReplayStoreUnavailable) for result in results)
        # One Redis timeout is below the threshold; the three queue timeouts did not count.
        assert breaker.state is BreakerState.CLOSED
        assert await store.first_use(b"after", TTL_S)
