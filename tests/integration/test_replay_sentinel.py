"""Replay protection with a Sentinel-managed master, against real redis-server and
redis-sentinel processes: the store finds the master through the sentinels (a dead sentinel
skipped, password-protected sentinels, an unknown master name failing closed), ``WAIT`` and the
health ping, a forced failover (the old master demoted while the pool's connections still point
at it) after which writes go to the new master and every earlier key is still a replay; the
same over TLS (sentinels, master and replication all TLS-only, client certificates required),
where every TLS problem fails closed; and through two service processes, the race for one proof
and a failover (master killed, replica promoted) under a steady stream of fresh proofs and
replays.

The service-level failover test kills the master of the shared set-up: it runs last.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.redis_server import missing_redis_binaries
from tests.support.redis_topologies import SentinelSetup, sentinel_setup, wait_until
from tests.support.service import ServiceProcess, TestIssuer, dpop_request, running_service
from tests.support.threads import race_in_threads as race
from tests.support.tls_files import (
    TLS_PROBLEMS,
    assert_fails_closed,
    client_options,
    make_redis_tls,
)
from tests.support.verify_load import SteadyStream, reason, same_request_concurrently
from verifier.cli.mint import KeyPair, generate_key
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable
from verifier.replay.redis_blocking import BlockingSentinel

TTL_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def _redis_installed() -> None:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def client() -> KeyPair:
    return generate_key("ES256")


def _pool(store: RedisReplayStore) -> BlockingSentinel:
    pool = store._backend
    assert isinstance(pool, BlockingSentinel)
    return pool


# --- The store through the sentinels -------------------------------------------------------------


def test_the_store_finds_the_master_and_waits_for_both_replicas(sentinels: SentinelSetup) -> None:
    # Generous deadlines and queueing: this checks discovery and atomicity, not latency.
    store = RedisReplayStore.from_url(
        sentinels.url, timeout_s=2.0, wait_replicas=2, wait_timeout_s=2.0, queue_timeout_s=10
    )
    other = RedisReplayStore.from_url(sentinels.url, timeout_s=2.0, queue_timeout_s=10)
    try:
        assert store.ping()
        assert store.first_use(b"via-sentinel", TTL_S)
        key = "dpop:jti:" + b"via-sentinel".hex()
        # WAIT 2: both replicas hold the key before first_use returned.
        assert all(r.cli("EXISTS", key) == "1" for r in sentinels.replicas)
        assert sentinels.master.cli("EXISTS", key) == "1"
        assert not store.first_use(b"via-sentinel", TTL_S)
        # 200 threads over two stores race for one key: exactly one first use.
        results = race([partial(s.first_use, b"raced", TTL_S) for s in (store, other)] * 100)
        assert results.count(True) == 1 and results.count(False) == 199
    finally:
        store.close()
        other.close()


def test_ping_needs_as_many_connected_replicas_as_wait_asks_for(sentinels: SentinelSetup) -> None:
    # Two replicas: WAIT 2 is satisfied, WAIT 3 is not (Redis answers after its timeout).
    enough = RedisReplayStore.from_url(
        sentinels.url, timeout_s=1.0, wait_replicas=2, wait_timeout_s=0.05
    )
    too_many = RedisReplayStore.from_url(
        sentinels.url, timeout_s=1.0, wait_replicas=3, wait_timeout_s=0.05
    )
    try:
        assert enough.ping()
        started = time.monotonic()
        assert not too_many.ping()
        assert time.monotonic() - started < 1.05 + 0.2
    finally:
        enough.close()
        too_many.close()


def test_a_dead_sentinel_is_skipped_and_the_answering_one_asked_first(
    sentinels: SentinelSetup,
) -> None:
    dead = ("127.0.0.1", free_port())
    url = sentinels.url.replace("redis+sentinel://", f"redis+sentinel://{dead[0]}:{dead[1]},")
    store = RedisReplayStore.from_url(url, timeout_s=2.0)
    try:
        assert store.ping()
        assert store.first_use(b"past-a-dead-sentinel", TTL_S)
        assert _pool(store)._sentinels[0] != dead
    finally:
        store.close()


def test_an_unknown_master_name_fails_closed_within_the_deadline(
    sentinels: SentinelSetup,
) -> None:
    url = sentinels.url.replace("/mymaster/", "/no-such-master/")
    store = RedisReplayStore.from_url(url, timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use(b"k", TTL_S)
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        assert not store.ping()
        assert time.monotonic() - started < 0.5 + 0.2 + 0.5
    finally:
        store.close()


def test_password_protected_sentinels_are_asked_with_the_sentinel_password() -> None:
    # DPOP_REDIS_SENTINEL_PASSWORD: the store authenticates to the sentinels (the master
    # itself is open here); without the password, or with a wrong one, it fails closed.
    with sentinel_setup(replicas=1, sentinels=2, sentinel_password="s3ntinel") as setup:
        assert setup.sentinels[0].cli("SENTINEL", "get-master-addr-by-name", setup.name)
        right = RedisReplayStore.from_url(
            setup.url, sentinel_password="s3ntinel", timeout_s=2.0, queue_timeout_s=10
        )
        try:
            assert right.ping()
            assert right.first_use(b"past-sentinel-auth", TTL_S)
            key = "dpop:jti:" + b"past-sentinel-auth".hex()
            assert setup.master.cli("EXISTS", key) == "1"
        finally:
            right.close()
        for password in (None, "wrong"):
            store = RedisReplayStore.from_url(
                setup.url, sentinel_password=password, timeout_s=0.5, retries=0
            )
            try:
                started = time.monotonic()
                with pytest.raises(ReplayStoreUnavailable):
                    store.first_use(b"refused-%s" % str(password).encode(), TTL_S)
                assert not store.ping()
                assert time.monotonic() - started < 3
            finally:
                store.close()
        assert setup.master.cli("KEYS", "dpop:jti:*").split() == [key]


def test_after_a_forced_failover_writes_go_to_the_new_master() -> None:
    with sentinel_setup(replicas=1, sentinels=1) as setup:
        store = RedisReplayStore.from_url(
            setup.url, timeout_s=2.0, wait_replicas=1, wait_timeout_s=2.0, queue_timeout_s=10
        )
        try:
            before = [b"before-%d" % i for i in range(20)]
            assert race([partial(store.first_use, k, TTL_S) for k in before]) == [True] * 20
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
                    accepted[key] = store.first_use(key, TTL_S)
                except ReplayStoreUnavailable:
                    time.sleep(0.05)
            assert list(accepted.values()) == [True] * 20
            for key in accepted:
                assert new_master.cli("EXISTS", "dpop:jti:" + key.hex()) == "1"
            assert store.ping()  # the new master, with its replica (the old master) connected
            # A sentinel that had not heard of the failover yet would have named the old master,
            # a replica now: its READONLY answer sends the pool back to the sentinels, and the
            # call is retried on the new master rather than failed.
            pool = _pool(store)
            pool._endpoint = pool._endpoint_for("127.0.0.1", old_master.port)
            pool._generation += 1  # every pooled connection reopens, to that endpoint
            assert store.first_use(b"after-a-stale-answer", TTL_S)
            assert new_master.cli("EXISTS", "dpop:jti:" + b"after-a-stale-answer".hex()) == "1"
            assert old_master.cli("ROLE").splitlines()[0] == "slave"
            # ... and every key accepted before the failover is still a replay.
            assert race([partial(store.first_use, k, TTL_S) for k in before]) == [False] * 20
        finally:
            store.close()


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    tls = make_redis_tls(tmp_path_factory.mktemp("sentinel-tls"))
    with sentinel_setup(replicas=1, sentinels=2, tls=tls) as setup:
        yield setup


def test_tls_sentinels_and_master(tls_sentinels: SentinelSetup) -> None:
    url = tls_sentinels.url
    assert url.startswith("rediss+sentinel://")
    tls = client_options(tls_sentinels.tls)
    store = RedisReplayStore.from_url(
        url,
        timeout_s=2.0,
        queue_timeout_s=10,
        wait_replicas=1,
        wait_timeout_s=2.0,
        **tls,  # type: ignore[arg-type]
    )
    other = RedisReplayStore.from_url(url, timeout_s=2.0, queue_timeout_s=10, **tls)  # type: ignore[arg-type]
    try:
        assert store.ping()
        assert store.first_use(b"sentinel-over-tls", TTL_S)
        key = "dpop:jti:" + b"sentinel-over-tls".hex()
        assert tls_sentinels.replicas[0].cli("EXISTS", key) == "1"  # WAIT 1, over TLS
        assert not other.first_use(b"sentinel-over-tls", TTL_S)  # another pool: a replay
        answers = race([partial(s.first_use, b"tls-raced", TTL_S) for s in (store, other)] * 50)
        assert answers.count(True) == 1 and answers.count(False) == 99
    finally:
        store.close()
        other.close()


@pytest.mark.parametrize("problem", TLS_PROBLEMS)
def test_tls_sentinel_problems_fail_closed(
    tls_sentinels: SentinelSetup, tmp_path: Path, problem: str
) -> None:
    assert_fails_closed(tls_sentinels.url, tls_sentinels.tls, problem, tmp_path)


# --- Through the service ------------------------------------------------------------------------


def test_one_proof_raced_through_two_processes_is_accepted_once(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair, sentinels: SentinelSetup
) -> None:
    env = {"DPOP_REPLAY_URL": sentinels.url, "DPOP_REPLAY_TIMEOUT_MS": "3000"}
    with (
        running_service(tmp_path, issuer, env) as one,
        running_service(tmp_path, issuer, env) as two,
    ):
        request = dpop_request(client, issuer.token(client))
        answers = same_request_concurrently([one, two], request, total=240)
    reasons = [reason(a) for a in answers]
    assert reasons.count("ok") == 1
    assert reasons.count("replayed") == len(answers) - 1


def test_failover_keeps_every_proof_single_use(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair, sentinels: SentinelSetup
) -> None:
    env = {
        "DPOP_REPLAY_URL": sentinels.url,
        "DPOP_REDIS_WAIT_REPLICAS": "1",
        "DPOP_REDIS_WAIT_TIMEOUT_MS": "100",
    }
    old_master = sentinels.server_on(sentinels.current_master_port())
    with (
        running_service(tmp_path, issuer, env) as one,
        running_service(tmp_path, issuer, env) as two,
    ):
        one.wait_health("SERVING")
        two.wait_health("SERVING")
        token = issuer.token(client)
        with SteadyStream([one, two], client, token, replay_accepted=True) as stream:
            time.sleep(1.0)
            old_master.kill()
            killed_at = time.monotonic()
            wait_until(
                lambda: sentinels.current_master_port() != old_master.port,
                20,
                "a replica to be promoted",
            )
            promoted_at = time.monotonic()
            resumed = stream.wait_for("ok", after=promoted_at, timeout_s=20)
            time.sleep(1.0)  # keep replaying what was accepted before and after
        samples = stream.samples

        fresh_before = [s for s in samples if not s.replay_attempt and s.sent_at < killed_at]
        assert sum(s.reason == "ok" for s in fresh_before) >= 10
        # No failover can start before down-after-milliseconds (1 s): in that window there is
        # no master, and every fresh proof is denied (fail closed), never allowed.
        outage = [s for s in samples if killed_at + 0.05 < s.sent_at < killed_at + 0.9]
        assert outage and {s.reason for s in outage} == {"replay_store_unavailable"}
        assert resumed.sent_at - promoted_at < 20
        # No replay attempt was ever allowed, before, during or after the failover ...
        replays = [s for s in samples if s.replay_attempt]
        assert len(replays) >= 50
        assert {s.reason for s in replays} <= {"replayed", "replay_store_unavailable"}
        # ... and every accepted proof is still remembered by the new master.
        accepted = [s.proof for s in samples if s.reason == "ok"]
        assert len(accepted) == len(set(accepted))
        for proof in accepted:
            assert (
                _settled_reason(one, dict(dpop_request(client, token), dpop=[proof])) == "replayed"
            )


def _settled_reason(service: ServiceProcess, request: dict[str, object]) -> str:
    """The answer once the store answers at all (sentinels may still be settling)."""
    deadline = time.monotonic() + 15
    while True:
        answer = reason(service.verify(**request))
        if answer != "replay_store_unavailable" or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)
