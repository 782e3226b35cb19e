"""``RedisReplayStore.first_use_blocking`` (worker threads) on a real 3-master Redis Cluster: keys
routed to their slot's master, one accept across the blocking and async paths, a stale slot map
repaired by ``MOVED``, a migrating slot followed through ``ASK``, and ``WAIT`` sent to the master
that took the write; and a TLS-only cluster (clients, bus and replication), where every TLS
problem fails closed. The service-level cluster tests (test_replay_cluster.py) run through this
path too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.support.redis_server import missing_redis_binaries
from tests.support.redis_topologies import ClusterSetup, cluster_setup, wait_until
from tests.support.threads import race_in_threads as race
from tests.support.tls_files import (
    TLS_PROBLEMS,
    assert_blocking_fails_closed,
    client_options,
    make_redis_tls,
)
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable
from verifier.replay.breaker import CircuitBreaker
from verifier.replay.redis_blocking import BlockingCluster, key_slot

TTL_S = 60.0


def _redis_key(key: bytes) -> bytes:
    return b"dpop:jti:" + key.hex().encode()


def _store(cluster: ClusterSetup, **options: object) -> RedisReplayStore:
    store = RedisReplayStore.from_url(cluster.url, timeout_s=2.0, queue_timeout_s=10, **options)  # type: ignore[arg-type]
    assert store.blocking_supported
    return store


def _blocking(store: RedisReplayStore) -> BlockingCluster:
    blocking = store._blocking
    assert isinstance(blocking, BlockingCluster)
    return blocking


def test_the_slot_function_is_redis_own(cluster: ClusterSetup) -> None:
    node = cluster.masters[0]
    for key in (b"dpop:jti:00ff", b"a", b"{user1000}.following", b"foo{}{bar}", b"{}x", b"x{y"):
        assert key_slot(key) == int(node.cli("CLUSTER", "KEYSLOT", key.decode()))


def test_keys_go_to_their_masters_and_state_is_shared_with_the_async_path(
    cluster: ClusterSetup,
) -> None:
    store = _store(cluster)
    try:
        keys = [b"spread-%d" % i for i in range(60)]
        assert race([partial(store.first_use_blocking, k, TTL_S) for k in keys]) == [True] * 60
        holders = {cluster.master_for_key(_redis_key(k)).port for k in keys}
        assert holders == {m.port for m in cluster.masters}  # every master took some
        for key in keys[:10]:
            assert cluster.master_for_key(_redis_key(key)).cli("EXISTS", _redis_key(key)) == "1"

        async def async_path() -> list[bool]:
            other = RedisReplayStore.from_url(cluster.url, timeout_s=2.0, queue_timeout_s=10)
            try:
                return list(await asyncio.gather(*(other.first_use(k, TTL_S) for k in keys)))
            finally:
                await other.close()

        assert asyncio.run(async_path()) == [False] * 60
        answers = race([partial(store.first_use_blocking, b"raced", TTL_S)] * 150)
        assert answers.count(True) == 1
    finally:
        asyncio.run(store.close())


def test_a_stale_slot_map_is_repaired_by_moved(cluster: ClusterSetup) -> None:
    store = _store(cluster)
    try:
        assert store.first_use_blocking(b"warm-up", TTL_S)
        blocking = _blocking(store)
        owners = blocking._owners
        assert owners is not None
        key = _redis_key(b"moved-once")
        right = cluster.master_for_key(key)
        wrong = next(m for m in cluster.masters if m.port != right.port)
        # The map names the wrong master for this key's slot, as after a resharding.
        owners[key_slot(key)] = ("127.0.0.1", wrong.port)
        assert store.first_use_blocking(b"moved-once", TTL_S)
        assert right.cli("EXISTS", key) == "1"
        assert wrong.cli("EXISTS", key).startswith("MOVED")  # not its slot: never written there
        assert blocking._owners is not None  # reloaded
        assert blocking._owners[key_slot(key)] == ("127.0.0.1", right.port)
        assert not store.first_use_blocking(b"moved-once", TTL_S)
    finally:
        asyncio.run(store.close())


def test_a_migrating_slot_is_followed_through_ask(cluster: ClusterSetup) -> None:
    store = _store(cluster)
    key = _redis_key(b"asked")
    slot = str(key_slot(key))
    source = cluster.master_for_key(key)
    target = next(m for m in cluster.masters if m.port != source.port)
    source_id, target_id = source.cli("CLUSTER", "MYID"), target.cli("CLUSTER", "MYID")
    try:
        assert store.first_use_blocking(b"warm-up-ask", TTL_S)
        # Start moving the slot: the source answers ASK for keys it does not hold.
        assert target.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id) == "OK"
        assert source.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id) == "OK"
        assert store.first_use_blocking(b"asked", TTL_S)
        assert source.cli("EXISTS", key).startswith("ASK ")  # the source does not hold it
        # Finish the move: the slot is the target's, where the key was written.
        for node in cluster.masters:
            assert node.cli("CLUSTER", "SETSLOT", slot, "NODE", target_id) == "OK"
        wait_until(lambda: cluster.master_for_key(key).port == target.port, 10, "slot moved")
        assert target.cli("EXISTS", key) == "1"
        # The pool's map still names the source: MOVED, reload, and a replay is a replay.
        assert not store.first_use_blocking(b"asked", TTL_S)
    finally:
        asyncio.run(store.close())


def test_wait_is_sent_to_the_master_that_took_the_write(cluster: ClusterSetup) -> None:
    # Only the first master has a replica: WAIT 1 succeeds exactly for keys in its slots.
    def waiting_store(wait_timeout_s: float) -> RedisReplayStore:
        return _store(
            cluster,
            wait_replicas=1,
            wait_timeout_s=wait_timeout_s,
            key_prefix=b"bwait:",
            breaker=CircuitBreaker(failure_threshold=10_000),
        )

    patient, hasty = waiting_store(2.0), waiting_store(0.05)
    try:
        seen = set()
        for i in range(30):
            key = b"%d" % i
            owner = cluster.master_for_key(b"bwait:" + key.hex().encode())
            seen.add(owner.port)
            if owner is cluster.masters[0]:
                assert patient.first_use_blocking(key, TTL_S)
                found = cluster.replicas[0].cli("--scan", "--pattern", "bwait:" + key.hex())
                assert found == "bwait:" + key.hex()  # the replica itself holds the key
            else:
                with pytest.raises(ReplayStoreUnavailable, match="0 of 1"):
                    hasty.first_use_blocking(key, TTL_S)
        assert seen == {m.port for m in cluster.masters}
    finally:
        asyncio.run(patient.close())
        asyncio.run(hasty.close())


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    tls = make_redis_tls(tmp_path_factory.mktemp("cluster-tls"))
    with cluster_setup(masters=3, tls=tls) as setup:
        yield setup


def test_a_tls_cluster_on_both_paths(tls_cluster: ClusterSetup) -> None:
    assert tls_cluster.url.startswith("rediss+cluster://")
    store = _store(tls_cluster, **client_options(tls_cluster.tls))
    keys = [b"tls-%d" % i for i in range(30)]
    try:
        assert race([partial(store.first_use_blocking, k, TTL_S) for k in keys]) == [True] * 30
        holders = {tls_cluster.master_for_key(_redis_key(k)).port for k in keys}
        assert holders == {m.port for m in tls_cluster.masters}

        async def async_path() -> list[bool]:
            other = RedisReplayStore.from_url(
                tls_cluster.url, timeout_s=2.0, **client_options(tls_cluster.tls)
            )
            try:
                return list(await asyncio.gather(*(other.first_use(k, TTL_S) for k in keys)))
            finally:
                await other.close()

        assert asyncio.run(async_path()) == [False] * 30
    finally:
        asyncio.run(store.close())


@pytest.mark.parametrize("problem", TLS_PROBLEMS)
def test_tls_cluster_problems_fail_closed(
    tls_cluster: ClusterSetup, tmp_path: Path, problem: str
) -> None:
    assert_blocking_fails_closed(tls_cluster.url, tls_cluster.tls, problem, tmp_path)
