"""RedisReplayStore against a real standalone redis-server on loopback: keys, expiry, atomicity
across threads and stores, outages, the deadline, the breaker, the connection pool, and the
health ping. TLS, ACL, retries and WAIT: test_replay_redis_tls_retry.py."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.threads import race_in_threads as race
from verifier.config import ReplaySettings
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable
from verifier.replay.breaker import BreakerState, CircuitBreaker

TTL_S = 60.0
PING_SLACK_S = 0.2
"""How far past the store's deadline ``ping`` may run."""


@contextlib.contextmanager
def store_for(url: str, **options: Any) -> Iterator[RedisReplayStore]:
    store = RedisReplayStore.from_url(url, **options)
    try:
        yield store
    finally:
        store.close()


def unavailable_calls(store: RedisReplayStore, count: int, slowest: list[float]) -> float:
    """``count`` calls that must all raise ReplayStoreUnavailable; total seconds taken.
    Appends the slowest single call's duration to ``slowest``."""
    started = time.monotonic()
    worst = 0.0
    for i in range(count):
        call_started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use(b"outage-%d" % i, TTL_S)
        worst = max(worst, time.monotonic() - call_started)
    slowest.append(worst)
    return time.monotonic() - started


def timed_ping(store: RedisReplayStore) -> tuple[bool, float]:
    """``store.ping()`` and the seconds it took."""
    started = time.monotonic()
    answer = store.ping()
    return answer, time.monotonic() - started


@pytest.fixture(autouse=True)
def _fast_thread_switching() -> Iterator[None]:
    """Switch threads often, so that races show up if there are any."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


# --- Keys, expiry, atomicity ---------------------------------------------------------------------


def test_first_use_then_replay_as_prefixed_hex_with_the_ttl(redis_server: RedisServer) -> None:
    with store_for(redis_server.url) as store:
        assert store.first_use(b"\xab\xcd", 30)
        assert not store.first_use(b"\xab\xcd", 30)
        assert store.first_use(b"\x01", 30)
        assert not store.first_use(b"\x01", 30)
    assert sorted(redis_server.cli("--scan", "--pattern", "*").split()) == [
        "dpop:jti:01",
        "dpop:jti:abcd",
    ]
    assert 29_000 < int(redis_server.cli("PTTL", "dpop:jti:abcd")) <= 30_000


def test_custom_key_prefix(redis_server: RedisServer) -> None:
    with store_for(redis_server.url, key_prefix=b"tenant-a:") as store:
        assert store.first_use(b"\x00", TTL_S)
    assert redis_server.cli("--scan", "--pattern", "*") == "tenant-a:00"


def test_database_number_is_selected(redis_server: RedisServer) -> None:
    with store_for(redis_server.url.replace("/0", "/3")) as store:
        assert store.first_use(b"db", TTL_S)
    assert redis_server.cli("-n", "3", "EXISTS", "dpop:jti:6462") == "1"
    assert redis_server.cli("-n", "0", "EXISTS", "dpop:jti:6462") == "0"


def test_key_expires_after_its_ttl(redis_server: RedisServer) -> None:
    with store_for(redis_server.url) as store:
        assert store.first_use(b"short", 0.1)
        assert not store.first_use(b"short", 0.1)
        time.sleep(0.3)
        assert store.first_use(b"short", 0.1)
        with pytest.raises(ValueError):
            store.first_use(b"short", 0)


def test_200_threads_one_store_one_true(redis_server: RedisServer) -> None:
    # Generous timeouts: this checks atomicity, not latency, on a possibly busy CI machine.
    with store_for(redis_server.url, timeout_s=2.0, max_connections=16) as store:
        for round_ in range(3):
            key = b"same-%d" % round_
            results = race([partial(store.first_use, key, TTL_S)] * 200)
            assert results.count(True) == 1
            assert results.count(False) == 199


def test_200_threads_two_stores_sharing_redis_one_true(redis_server: RedisServer) -> None:
    with (
        store_for(redis_server.url, timeout_s=2.0) as one,
        store_for(redis_server.url, timeout_s=2.0) as two,
    ):
        calls = [partial(s.first_use, b"shared", TTL_S) for s in (one, two)] * 110
        results = race(calls)
    assert results.count(True) == 1
    assert results.count(False) == 219


def test_factory_opens_a_working_redis_store(redis_server: RedisServer) -> None:
    store = ReplaySettings(
        replay_url=redis_server.url, replay_timeout_ms=500, memory_replay_max_entries=1
    ).open_store()
    try:
        assert isinstance(store, RedisReplayStore)
        assert store.ping()
        assert store.first_use(b"k", TTL_S)
        assert not store.first_use(b"k", TTL_S)
    finally:
        store.close()


def test_every_redis_scheme_opens_a_store_that_fails_closed_when_unreachable() -> None:
    # Sentinel and Cluster against real servers: test_replay_{sentinel,cluster}.py.
    for url in (
        f"redis://127.0.0.1:{free_port()}",
        f"rediss://127.0.0.1:{free_port()}",
        f"redis+sentinel://127.0.0.1:{free_port()}/m",
        f"rediss+sentinel://127.0.0.1:{free_port()}/m",
        f"redis+cluster://127.0.0.1:{free_port()}",
        f"rediss+cluster://127.0.0.1:{free_port()}",
    ):
        store = ReplaySettings(replay_url=url, replay_timeout_ms=500).open_store()
        assert isinstance(store, RedisReplayStore)
        try:
            with pytest.raises(ReplayStoreUnavailable):
                store.first_use(b"k", TTL_S)  # nothing listens there
            answer, took = timed_ping(store)
            assert not answer
            assert took < 0.5 + PING_SLACK_S + 0.5
        finally:
            store.close()


def test_close_closes_every_connection(redis_server: RedisServer) -> None:
    with store_for(redis_server.url, timeout_s=2.0) as store:
        race([partial(store.first_use, b"%d" % i, TTL_S) for i in range(20)])
        assert len(redis_server.cli("CLIENT", "LIST").splitlines()) > 2
    # Only redis-cli's own connection is left.
    assert len(redis_server.cli("CLIENT", "LIST").splitlines()) == 1
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use(b"after-close", TTL_S)
    assert not store.ping()


# --- Outages, deadline, breaker, pool ------------------------------------------------------------


def test_killed_redis_fails_closed_within_the_deadline_and_recovers(
    redis_server: RedisServer,
) -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown_s=0.2)
    with store_for(redis_server.url, timeout_s=0.05, breaker=breaker) as store:
        # Several pooled connections, all of which go stale when the server dies.
        race([partial(store.first_use, b"warm-%d" % i, TTL_S) for i in range(10)])
        redis_server.kill()
        slowest: list[float] = []
        assert unavailable_calls(store, 20, slowest) < 1.0
        assert slowest[0] < 0.5
        assert breaker.state is BreakerState.OPEN
        redis_server.restart()
        time.sleep(0.3)  # past the breaker's cool-down
        # Every pooled connection is stale; the first call's retry reconnects.
        assert store.first_use(b"after", TTL_S)
        assert breaker.state is BreakerState.CLOSED
        assert not store.first_use(b"after", TTL_S)
        results = race([partial(store.first_use, b"new-%d" % i, TTL_S) for i in range(10)])
        assert results == [True] * 10


def test_paused_redis_times_out_per_call_and_the_breaker_opens_and_closes(
    redis_server: RedisServer,
) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=0.3)
    with store_for(redis_server.url, timeout_s=0.1, breaker=breaker) as store:
        assert store.first_use(b"before", TTL_S)
        redis_server.pause()
        try:
            slowest: list[float] = []
            # 3 timeouts of ~100 ms open the breaker; the other 17 calls fail at once.
            assert unavailable_calls(store, 20, slowest) < 1.5
            assert slowest[0] < 0.6  # one deadline, with room for a busy machine
            assert breaker.state is BreakerState.OPEN
        finally:
            redis_server.resume()
        time.sleep(0.4)  # past the cool-down: one probe goes through and closes it
        assert store.first_use(b"after", TTL_S)
        assert breaker.state is BreakerState.CLOSED
        assert not store.first_use(b"before", TTL_S)


def test_open_breaker_does_not_touch_redis(redis_server: RedisServer) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=60)
    with store_for(redis_server.url, breaker=breaker) as store:
        redis_server.kill()
        unavailable_calls(store, 1, [])
        redis_server.restart()
        # Redis is back, but the breaker is still cooling down: refused without a call.
        with pytest.raises(ReplayStoreUnavailable, match="circuit open"):
            store.first_use(b"k", TTL_S)
        assert store.ping()  # health checks bypass the breaker
        assert breaker.state is BreakerState.OPEN  # ... and do not close it


def test_queue_timeouts_fail_closed_without_opening_the_breaker(
    redis_server: RedisServer,
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=60)
    with store_for(
        redis_server.url, timeout_s=0.3, max_connections=1, queue_timeout_s=0.05, breaker=breaker
    ) as store:
        redis_server.pause()
        try:
            results = race([partial(store.first_use, b"%d" % i, TTL_S) for i in range(4)])
        finally:
            redis_server.resume()
        assert all(isinstance(result, ReplayStoreUnavailable) for result in results)
        assert sum("queue timeout" in str(result) for result in results) == 3
        # One Redis timeout is below the threshold; the three queue timeouts did not count.
        assert breaker.state is BreakerState.CLOSED
        assert store.first_use(b"after", TTL_S)


def test_a_burst_beyond_the_pool_queues_instead_of_failing(redis_server: RedisServer) -> None:
    with store_for(redis_server.url, timeout_s=1.0, max_connections=2) as store:
        results = race([partial(store.first_use, b"%d" % i, TTL_S) for i in range(100)])
    assert results == [True] * 100


# --- Health ping --------------------------------------------------------------------------------


def test_ping_follows_redis_down_and_up_without_raising(redis_server: RedisServer) -> None:
    with store_for(redis_server.url, timeout_s=0.05) as store:
        assert store.ping()
        redis_server.kill()
        for _ in range(3):  # a stale pooled connection, then refused connections
            answer, took = timed_ping(store)
            assert not answer
            assert took < 0.05 + PING_SLACK_S + 0.2
        redis_server.restart()
        assert store.ping()


def test_ping_of_a_paused_redis_is_false_within_the_deadline(redis_server: RedisServer) -> None:
    with store_for(redis_server.url, timeout_s=0.1) as store:
        assert store.ping()
        redis_server.pause()
        try:
            answer, took = timed_ping(store)
            assert not answer
            assert took < 0.1 + PING_SLACK_S + 0.2
        finally:
            redis_server.resume()
        assert store.ping()


def test_ping_queues_for_a_pooled_connection_within_its_deadline(
    redis_server: RedisServer,
) -> None:
    # The only connection is held by a call that Redis does not answer (paused): ping waits
    # for it, then gets no answer either, and says False within its own deadline.
    with (
        store_for(redis_server.url, timeout_s=0.3, max_connections=1, queue_timeout_s=5) as store,
        ThreadPoolExecutor(max_workers=1) as thread,
    ):
        assert store.ping()
        redis_server.pause()
        try:
            stuck = thread.submit(store.first_use, b"stuck", TTL_S)
            time.sleep(0.05)  # the call has taken the connection
            answer, took = timed_ping(store)
            with pytest.raises(ReplayStoreUnavailable):
                stuck.result()
        finally:
            redis_server.resume()
        assert not answer
        assert 0.2 < took < 0.3 + PING_SLACK_S + 0.3
        assert store.ping()


def test_ping_with_a_wrong_password_is_false(redis_server: RedisServer) -> None:
    redis_server.cli("CONFIG", "SET", "requirepass", "s3cret")
    with store_for(redis_server.url, password="s3cret", timeout_s=0.5) as store:
        assert store.ping()
    for password in ("wrong", None):
        with store_for(redis_server.url, password=password, timeout_s=0.5) as store:
            assert not store.ping()
            with pytest.raises(ReplayStoreUnavailable):
                store.first_use(b"k", TTL_S)
