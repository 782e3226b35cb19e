"""Replay protection on a real 3-master Redis Cluster built by the test (``redis-cli --cluster
create``), with one replica for the first master: keys routed to their slot's master (Redis's
own slot function), one accept per key across threads and stores, a least-privilege ACL user,
a stale slot map repaired by ``MOVED``, a migrating slot followed through ``ASK``, ``WAIT`` sent
to the master that took the write, and the health ping of every master; a TLS-only cluster
(clients, bus and replication), where every TLS problem fails closed; and the race for one
proof through two service processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from redis.crc import key_slot

from tests.support.redis_server import RedisServer, missing_redis_binaries
from tests.support.redis_topologies import ClusterSetup, cluster_setup, wait_until
from tests.support.service import TestIssuer, dpop_request, running_service
from tests.support.threads import race_in_threads as race
from tests.support.tls_files import (
    TLS_PROBLEMS,
    assert_fails_closed,
    client_options,
    make_redis_tls,
)
from tests.support.verify_load import reason, same_request_concurrently
from verifier.cli.mint import KeyPair, generate_key, make_proof
from verifier.dpop.proof import replay_key
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable
from verifier.replay.breaker import CircuitBreaker
from verifier.replay.redis_blocking import BlockingCluster

TTL_S = 60.0


def _redis_key(key: bytes, prefix: bytes = b"dpop:jti:") -> bytes:
    return prefix + key.hex().encode()


def _store(cluster: ClusterSetup, **options: object) -> RedisReplayStore:
    """A store on ``cluster``; by default with generous deadlines (a possibly busy machine)."""
    settings = {"timeout_s": 2.0, "queue_timeout_s": 10, **options}
    return RedisReplayStore.from_url(cluster.url, **settings)  # type: ignore[arg-type]


def _pool(store: RedisReplayStore) -> BlockingCluster:
    pool = store._backend
    assert isinstance(pool, BlockingCluster)
    return pool


def test_the_slot_function_is_redis_own(cluster: ClusterSetup) -> None:
    node = cluster.masters[0]
    for key in (b"dpop:jti:00ff", b"a", b"{user1000}.following", b"foo{}{bar}", b"{}x", b"x{y"):
        assert key_slot(key) == int(node.cli("CLUSTER", "KEYSLOT", key.decode()))


def test_keys_go_to_their_masters_and_each_is_accepted_once(cluster: ClusterSetup) -> None:
    store = _store(cluster, key_prefix=b"spread:")
    other = _store(cluster, key_prefix=b"spread:")
    try:
        assert store.ping()
        keys = [b"%d" % i for i in range(300)]
        assert race([partial(store.first_use, k, TTL_S) for k in keys[:60]]) == [True] * 60
        assert all(store.first_use(k, TTL_S) for k in keys[60:])
        for key in keys[:10]:
            redis_key = _redis_key(key, b"spread:")
            assert cluster.master_for_key(redis_key).cli("EXISTS", redis_key.decode()) == "1"
        # Another store, its own pool: every key is a replay, and one new key is accepted once.
        assert race([partial(other.first_use, k, TTL_S) for k in keys[:60]]) == [False] * 60
        answers = race([partial(s.first_use, b"raced", TTL_S) for s in (store, other)] * 75)
        assert answers.count(True) == 1
    finally:
        store.close()
        other.close()
    script = "return #redis.call('KEYS', 'spread:*')"
    counts = [int(m.cli("EVAL", script, "0")) for m in cluster.masters]
    assert sum(counts) == 301
    assert all(count > 50 for count in counts)  # every master took a fair share


def test_least_privilege_acl_user_on_every_node(cluster: ClusterSetup) -> None:
    # docs/replay.md: a cluster client also reads the slot map (CLUSTER SLOTS).
    acl = ["~acl:*", "-@all", "+set", "+get", "+wait", "+ping", "+cluster|slots"]
    for node in [*cluster.masters, *cluster.replicas]:
        node.cli("ACL", "SETUSER", "dpop", "on", ">cluster-pw", "resetkeys", *acl)
    store = _store(cluster, username="dpop", password="cluster-pw", key_prefix=b"acl:")
    try:
        assert store.ping()
        assert race([partial(store.first_use, b"%d" % i, TTL_S) for i in range(30)]) == [True] * 30
        assert not store.first_use(b"0", TTL_S)
    finally:
        store.close()


def test_a_stale_slot_map_is_repaired_by_moved(cluster: ClusterSetup) -> None:
    store = _store(cluster)
    try:
        assert store.first_use(b"warm-up", TTL_S)
        pool = _pool(store)
        owners = pool._owners
        assert owners is not None
        key = _redis_key(b"moved-once")
        right = cluster.master_for_key(key)
        wrong = next(m for m in cluster.masters if m.port != right.port)
        # The map names the wrong master for this key's slot, as after a resharding.
        owners[key_slot(key)] = ("127.0.0.1", wrong.port)
        assert store.first_use(b"moved-once", TTL_S)
        assert right.cli("EXISTS", key.decode()) == "1"
        assert wrong.cli("EXISTS", key.decode()).startswith(
            "MOVED"
        )  # not its slot: never written there
        assert pool._owners is not None  # reloaded
        assert pool._owners[key_slot(key)] == ("127.0.0.1", right.port)
        assert not store.first_use(b"moved-once", TTL_S)
    finally:
        store.close()


def test_a_migrating_slot_is_followed_through_ask(cluster: ClusterSetup) -> None:
    store = _store(cluster)
    key = _redis_key(b"asked")
    slot = str(key_slot(key))
    source = cluster.master_for_key(key)
    target = next(m for m in cluster.masters if m.port != source.port)
    source_id, target_id = source.cli("CLUSTER", "MYID"), target.cli("CLUSTER", "MYID")
    try:
        assert store.first_use(b"warm-up-ask", TTL_S)
        # Start moving the slot: the source answers ASK for keys it does not hold.
        assert target.cli("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id) == "OK"
        assert source.cli("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id) == "OK"
        assert store.first_use(b"asked", TTL_S)
        assert source.cli("EXISTS", key.decode()).startswith("ASK ")  # the source does not hold it
        # Finish the move: the slot is the target's, where the key was written.
        for node in cluster.masters:
            assert node.cli("CLUSTER", "SETSLOT", slot, "NODE", target_id) == "OK"
        wait_until(lambda: cluster.master_for_key(key).port == target.port, 10, "slot moved")
        assert target.cli("EXISTS", key.decode()) == "1"
        # The pool's map still names the source: MOVED, reload, and a replay is a replay.
        assert not store.first_use(b"asked", TTL_S)
    finally:
        store.close()


def test_wait_is_sent_to_the_master_that_took_the_write(cluster: ClusterSetup) -> None:
    # Only the first master has a replica: WAIT 1 succeeds exactly for keys in its slots.
    def waiting_store(wait_timeout_s: float) -> RedisReplayStore:
        return _store(
            cluster,
            wait_replicas=1,
            wait_timeout_s=wait_timeout_s,
            key_prefix=b"wait:",
            breaker=CircuitBreaker(failure_threshold=10_000),
        )

    patient, hasty = waiting_store(2.0), waiting_store(0.05)
    try:
        seen = set()
        for i in range(30):
            key = b"%d" % i
            owner = cluster.master_for_key(_redis_key(key, b"wait:"))
            seen.add(owner.port)
            if owner is cluster.masters[0]:
                assert patient.first_use(key, TTL_S)
                # SCAN is node-local (no MOVED): the replica itself holds the key.
                found = cluster.replicas[0].cli("--scan", "--pattern", "wait:" + key.hex())
                assert found == "wait:" + key.hex()
            else:
                with pytest.raises(ReplayStoreUnavailable, match="0 of 1"):
                    hasty.first_use(key, TTL_S)
        assert seen == {m.port for m in cluster.masters}
    finally:
        patient.close()
        hasty.close()


def test_ping_asks_every_master_and_wait_needs_a_replica_on_each(cluster: ClusterSetup) -> None:
    plain = _store(cluster, timeout_s=0.2)
    # Only the first master has a replica: WAIT 1 is not satisfied by the other two.
    waiting = _store(cluster, timeout_s=0.2, wait_replicas=1, wait_timeout_s=0.05)
    try:
        assert plain.ping()  # loads the slot map first
        assert {node for node in _pool(plain)._owners or []} == {
            ("127.0.0.1", m.port) for m in cluster.masters
        }
        assert not waiting.ping()
        # One master frozen (briefly: well inside cluster-node-timeout, so no failover):
        # no answer from it within the deadline is False, and never an exception.
        frozen = cluster.masters[2]
        frozen.pause()
        try:
            assert not plain.ping()
        finally:
            frozen.resume()
        wait_until(plain.ping, 5, "the cluster to answer again")
    finally:
        plain.close()
        waiting.close()


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    tls = make_redis_tls(tmp_path_factory.mktemp("cluster-tls"))
    with cluster_setup(masters=3, tls=tls) as setup:
        yield setup


def test_a_tls_cluster(tls_cluster: ClusterSetup) -> None:
    assert tls_cluster.url.startswith("rediss+cluster://")
    store = _store(tls_cluster, **client_options(tls_cluster.tls))
    other = _store(tls_cluster, **client_options(tls_cluster.tls))
    keys = [b"tls-%d" % i for i in range(30)]
    try:
        assert store.ping()
        assert race([partial(store.first_use, k, TTL_S) for k in keys]) == [True] * 30
        holders = {tls_cluster.master_for_key(_redis_key(k)).port for k in keys}
        assert holders == {m.port for m in tls_cluster.masters}
        assert race([partial(other.first_use, k, TTL_S) for k in keys]) == [False] * 30
    finally:
        store.close()
        other.close()


@pytest.mark.parametrize("problem", TLS_PROBLEMS)
def test_tls_cluster_problems_fail_closed(
    tls_cluster: ClusterSetup, tmp_path: Path, problem: str
) -> None:
    assert_fails_closed(tls_cluster.url, tls_cluster.tls, problem, tmp_path)


# --- Through the service ------------------------------------------------------------------------


def test_one_proof_raced_through_two_processes_is_accepted_once(
    tmp_path: Path, cluster: ClusterSetup
) -> None:
    issuer = TestIssuer(tmp_path)
    client: KeyPair = generate_key("ES256")
    env = {"DPOP_REPLAY_URL": cluster.url, "DPOP_REPLAY_TIMEOUT_MS": "3000"}
    with (
        running_service(tmp_path, issuer, env) as one,
        running_service(tmp_path, issuer, env) as two,
    ):
        token = issuer.token(client)
        for master in cluster.masters:  # one proof whose key lives on each master
            request = _request_recorded_on(cluster, master, client, token)
            answers = same_request_concurrently([one, two], request, total=200)
            reasons = [reason(a) for a in answers]
            assert reasons.count("ok") == 1
            assert reasons.count("replayed") == len(answers) - 1


def _request_recorded_on(
    cluster: ClusterSetup, master: RedisServer, client: KeyPair, token: str
) -> dict[str, object]:
    """A valid request whose replay key hashes to a slot of ``master``."""
    request = dpop_request(client, token)
    for attempt in range(200):
        jti = f"pick-{attempt}-{id(master)}"
        key = b"dpop:jti:" + replay_key(client.jkt, request["target_uri"], jti).hex().encode()
        if cluster.master_for_key(key) is master:
            proof = make_proof(client, "GET", request["target_uri"], access_token=token, jti=jti)
            return dict(request, dpop=[proof])
    raise AssertionError("no jti found for this master")
