"""Replay protection on a real 3-master Redis Cluster built by the test (``redis-cli --cluster
create``), with one replica for the first master: keys spread over the slots, WAIT on the
key's own master, and the race across two service processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import ClusterSetup
from tests.support.service import TestIssuer, dpop_request, running_service
from tests.support.verify_load import reason, same_request_concurrently
from verifier.dpop.proof import replay_key
from verifier.mint import KeyPair, generate_key, make_proof
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable
from verifier.replay.breaker import CircuitBreaker

TTL_S = 60.0


async def test_keys_spread_over_every_master(cluster: ClusterSetup) -> None:
    store = RedisReplayStore.from_url(cluster.url, timeout_s=3.0, key_prefix=b"spread:")
    try:
        assert await store.ping()
        results = await asyncio.gather(*(store.first_use(b"%d" % i, TTL_S) for i in range(300)))
        assert all(results)
        assert not await store.first_use(b"7", TTL_S)
    finally:
        await store.close()
    counts = [
        int(m.cli("EVAL", "return #redis.call('KEYS', 'spread:*')", "0")) for m in cluster.masters
    ]
    assert sum(counts) == 300
    assert all(count > 50 for count in counts)


async def test_wait_is_sent_to_the_master_that_took_the_write(cluster: ClusterSetup) -> None:
    # Only the first master has a replica: WAIT 1 succeeds exactly for keys in its slots.
    def waiting_store(wait_timeout_s: float) -> RedisReplayStore:
        return RedisReplayStore.from_url(
            cluster.url,
            timeout_s=1.0,
            wait_replicas=1,
            wait_timeout_s=wait_timeout_s,
            key_prefix=b"wait:",
            breaker=CircuitBreaker(failure_threshold=10_000),
        )

    patient, hasty = waiting_store(2.0), waiting_store(0.05)
    try:
        assert not await hasty.ping()  # two masters have no replica
        for i in range(30):
            key = b"%d" % i
            owner = cluster.master_for_key(b"wait:" + key.hex().encode())
            if owner is cluster.masters[0]:
                assert await patient.first_use(key, TTL_S)
                # SCAN is node-local (no MOVED): the replica itself holds the key.
                found = cluster.replicas[0].cli("--scan", "--pattern", "wait:" + key.hex())
                assert found == "wait:" + key.hex()
            else:
                with pytest.raises(ReplayStoreUnavailable, match="0 of 1"):
                    await hasty.first_use(key, TTL_S)
    finally:
        await patient.close()
        await hasty.close()


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


async def test_least_privilege_acl_user_on_every_node(cluster: ClusterSetup) -> None:
    # docs/replay.md: the cluster client also needs CLUSTER SLOTS and COMMAND (slot map).
    acl = ["~acl:*", "-@all", "+set", "+get", "+wait", "+ping", "+cluster|slots", "+command"]
    for node in [*cluster.masters, *cluster.replicas]:
        node.cli("ACL", "SETUSER", "dpop", "on", ">cluster-pw", "resetkeys", *acl)
    store = RedisReplayStore.from_url(
        cluster.url, username="dpop", password="cluster-pw", timeout_s=3.0, key_prefix=b"acl:"
    )
    try:
        results = await asyncio.gather(*(store.first_use(b"%d" % i, TTL_S) for i in range(30)))
        assert all(results)
        assert not await store.first_use(b"0", TTL_S)
        assert await store.ping()
    finally:
        await store.close()
