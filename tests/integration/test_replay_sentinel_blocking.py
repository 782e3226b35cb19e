"""``RedisReplayStore.first_use_blocking`` (worker threads) with a Sentinel-managed master, against
real redis-server and redis-sentinel processes: the master found through the sentinels, one
accept across the blocking and async paths, a dead sentinel skipped, an unknown master name
failing closed, and a forced failover (the old master demoted while the pool's connections
still point at it) after which writes go to the new master and every earlier key is still a
replay; and the same over TLS (sentinels, master and replication all TLS-only, client
certificates required), where every TLS problem fails closed. The service-level Sentinel tests
(test_replay_sentinel.py) run through this path too.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.net import free_port
from tests.support.redis_server import missing_redis_binaries
from tests.support.redis_topologies import SentinelSetup, sentinel_setup, wait_until
from tests.support.threads import race_in_threads as race
from tests.support.tls_files import (
    TLS_PROBLEMS,
    assert_blocking_fails_closed,
    client_options,
    make_redis_tls,
)
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable

TTL_S = 60.0
T = TypeVar("T")


def _on_a_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def test_the_blocking_path_finds_the_master_and_shares_state_with_the_async_one(
    sentinels: SentinelSetup,
) -> None:
    # Generous deadlines: this checks discovery and atomicity, not latency.
    store = RedisReplayStore.from_url(
        sentinels.url, timeout_s=2.0, wait_replicas=2, wait_timeout_s=2.0, queue_timeout_s=10
    )
    assert store.blocking_supported
    try:
        assert store.first_use_blocking(b"blocking-via-sentinel", TTL_S)
        key = "dpop:jti:" + b"blocking-via-sentinel".hex()
        # WAIT 2 on the blocking path: both replicas hold the key before the call returned.
        assert all(r.cli("EXISTS", key) == "1" for r in sentinels.replicas)
        assert sentinels.master.cli("EXISTS", key) == "1"
        assert not store.first_use_blocking(b"blocking-via-sentinel", TTL_S)

        # 200 threads on the blocking path and the async path of a second store race for one
        # key: exactly one first use.
        other = RedisReplayStore.from_url(sentinels.url, timeout_s=2.0, queue_timeout_s=10)
        results: list[bool] = []
        lock = threading.Lock()

        def async_side() -> None:
            async def many() -> list[bool]:
                try:
                    return list(
                        await asyncio.gather(*(other.first_use(b"raced", TTL_S) for _ in range(50)))
                    )
                finally:
                    await other.close()

            answers = _on_a_loop(many())
            with lock:
                results.extend(answers)

        side = threading.Thread(target=async_side)
        side.start()
        results_blocking = race([partial(store.first_use_blocking, b"raced", TTL_S)] * 200)
        side.join(30)
        assert not side.is_alive()
        assert (results + results_blocking).count(True) == 1
    finally:
        _on_a_loop(store.close())


def test_a_dead_sentinel_is_skipped_and_the_answering_one_asked_first(
    sentinels: SentinelSetup,
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    url = sentinels.url.replace("redis+sentinel://", f"redis+sentinel://{dead},")
    store = RedisReplayStore.from_url(url, timeout_s=2.0)
    try:
        assert store.first_use_blocking(b"past-a-dead-sentinel", TTL_S)
        blocking = store._blocking
        assert blocking is not None
        assert blocking._sentinels[0] != ("127.0.0.1", int(dead.rsplit(":", 1)[1]))  # type: ignore[attr-defined]
    finally:
        _on_a_loop(store.close())


def test_password_protected_sentinels_are_asked_with_the_sentinel_password() -> None:
    # DPOP_REDIS_SENTINEL_PASSWORD: the blocking path authenticates to the sentinels (the
    # master itself is open here); without the password, or with a wrong one, it fails closed.
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with sentinel_setup(replicas=1, sentinels=2, sentinel_password="s3ntinel") as setup:
        assert setup.sentinels[0].cli("SENTINEL", "get-master-addr-by-name", setup.name)
        right = RedisReplayStore.from_url(
            setup.url, sentinel_password="s3ntinel", timeout_s=2.0, queue_timeout_s=10
        )
        try:
            assert right.first_use_blocking(b"past-sentinel-auth", TTL_S)
            key = "dpop:jti:" + b"past-sentinel-auth".hex()
            assert setup.master.cli("EXISTS", key) == "1"
        finally:
            _on_a_loop(right.close())
        for password in (None, "wrong"):
            store = RedisReplayStore.from_url(
                setup.url, sentinel_password=password, timeout_s=0.5, retries=0
            )
            try:
                started = time.monotonic()
                with pytest.raises(ReplayStoreUnavailable):
                    store.first_use_blocking(b"refused-%s" % str(password).encode(), TTL_S)
                assert time.monotonic() - started < 3
            finally:
                _on_a_loop(store.close())
        assert setup.master.cli("KEYS", "dpop:jti:*").split() == [key]


def test_an_unknown_master_name_fails_closed_within_the_deadline(
    sentinels: SentinelSetup,
) -> None:
    url = sentinels.url.replace("/mymaster/", "/no-such-master/")
    store = RedisReplayStore.from_url(url, timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use_blocking(b"k", TTL_S)
        assert time.monotonic() - started < 2.0
    finally:
        _on_a_loop(store.close())


def test_after_a_forced_failover_writes_go_to_the_new_master() -> None:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with sentinel_setup(replicas=1, sentinels=1) as setup:
        store = RedisReplayStore.from_url(
            setup.url, timeout_s=2.0, wait_replicas=1, wait_timeout_s=2.0, queue_timeout_s=10
        )
        try:
            before = [b"before-%d" % i for i in range(20)]
            assert race([partial(store.first_use_blocking, k, TTL_S) for k in before]) == [
                True
            ] * len(before)
            old_master = setup.master
            # The pool holds connections to the old master; the sentinel now demotes it (it
            # answers NOGOODSLAVE until its view of the replica is fresh enough).
            wait_until(
                lambda: setup.sentinels[0].cli("SENTINEL", "FAILOVER", setup.name) == "OK",
                20,
                "the sentinel to accept a forced failover",
            )
            wait_until(
                lambda: setup.current_master_port() != old_master.port,
                20,
                "the sentinel to promote the replica",
            )
            wait_until(
                lambda: "role:slave" in old_master.cli("INFO", "replication"),
                20,
                "the old master to be demoted",
            )
            new_master = setup.server_on(setup.current_master_port())
            wait_until(  # WAIT 1 needs the demoted master synced as the new one's replica
                lambda: "state=online" in new_master.cli("INFO", "replication"),
                20,
                "the old master to sync from the new one",
            )
            # Writes land on the new master (the demoted one would answer READONLY, or its
            # connections were closed: either way the pool asks the sentinel again) ...
            # A refused call may still have written its key (SET NX landed, WAIT 1 failed while
            # the new master was still syncing its replica), so each attempt uses a new key.
            accepted: dict[bytes, bool] = {}
            deadline = time.monotonic() + 15
            for attempt in itertools.count():
                if len(accepted) == 20 or time.monotonic() > deadline:
                    break
                key = b"after-%d" % attempt
                try:
                    accepted[key] = store.first_use_blocking(key, TTL_S)
                except ReplayStoreUnavailable:
                    time.sleep(0.05)
            assert list(accepted.values()) == [True] * 20
            for key in accepted:
                assert new_master.cli("EXISTS", "dpop:jti:" + key.hex()) == "1"
            # A sentinel that had not heard of the failover yet would have named the old master,
            # a replica now: its READONLY answer sends the pool back to the sentinels, and the
            # call is retried on the new master rather than failed.
            blocking = store._blocking
            assert blocking is not None
            blocking._endpoint = blocking._endpoint_for("127.0.0.1", old_master.port)
            blocking._generation += 1  # every pooled connection reopens, to that endpoint
            assert store.first_use_blocking(b"after-a-stale-answer", TTL_S)
            assert new_master.cli("EXISTS", "dpop:jti:" + b"after-a-stale-answer".hex()) == "1"
            assert old_master.cli("ROLE").splitlines()[0] == "slave"
            # ... and every key accepted before the failover is still a replay.
            assert race([partial(store.first_use_blocking, k, TTL_S) for k in before]) == [
                False
            ] * len(before)
        finally:
            _on_a_loop(store.close())


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    tls = make_redis_tls(tmp_path_factory.mktemp("sentinel-tls"))
    with sentinel_setup(replicas=1, sentinels=2, tls=tls) as setup:
        yield setup


def test_tls_sentinels_and_master_on_the_blocking_path(tls_sentinels: SentinelSetup) -> None:
    url = tls_sentinels.url
    assert url.startswith("rediss+sentinel://")
    options = {"timeout_s": 2.0, "queue_timeout_s": 10, **client_options(tls_sentinels.tls)}
    store = RedisReplayStore.from_url(url, wait_replicas=1, wait_timeout_s=2.0, **options)
    assert store.blocking_supported
    try:
        assert store.first_use_blocking(b"sentinel-over-tls", TTL_S)
        key = "dpop:jti:" + b"sentinel-over-tls".hex()
        assert tls_sentinels.replicas[0].cli("EXISTS", key) == "1"  # WAIT 1, over TLS

        async def async_path() -> bool:  # redis-py's TLS sentinel client, on one loop
            other = RedisReplayStore.from_url(url, **options)
            try:
                return await other.first_use(b"sentinel-over-tls", TTL_S)
            finally:
                await other.close()

        assert _on_a_loop(async_path()) is False  # the same state: a replay
        answers = race([partial(store.first_use_blocking, b"tls-raced", TTL_S)] * 100)
        assert answers.count(True) == 1 and answers.count(False) == 99
    finally:
        _on_a_loop(store.close())


@pytest.mark.parametrize("problem", TLS_PROBLEMS)
def test_tls_sentinel_problems_fail_closed(
    tls_sentinels: SentinelSetup, tmp_path: Path, problem: str
) -> None:
    assert_blocking_fails_closed(tls_sentinels.url, tls_sentinels.tls, problem, tmp_path)
