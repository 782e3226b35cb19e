"""Replay protection on a real Sentinel set-up (a master, two replicas, three sentinels): the
store through Sentinel discovery, the race across two service processes, and a failover
(master killed, replica promoted) under a steady stream of fresh proofs and replays.

The failover test kills the master: it runs last and leaves the set-up with a new master.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.redis_topologies import SentinelSetup, wait_until
from tests.support.service import ServiceProcess, TestIssuer, dpop_request, running_service
from tests.support.verify_load import SteadyStream, reason, same_request_concurrently
from verifier.mint import KeyPair, generate_key
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable

TTL_S = 60.0


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def client() -> KeyPair:
    return generate_key("ES256")


async def test_store_finds_the_master_through_sentinel(sentinels: SentinelSetup) -> None:
    # Generous deadlines and queueing: this checks discovery and atomicity, not latency.
    store = RedisReplayStore.from_url(
        sentinels.url, timeout_s=2.0, wait_replicas=2, wait_timeout_s=2.0, queue_timeout_s=10
    )
    other = RedisReplayStore.from_url(sentinels.url, timeout_s=2.0, queue_timeout_s=10)
    try:
        assert await store.ping()
        assert await store.first_use(b"via-sentinel", TTL_S)
        key = "dpop:jti:" + b"via-sentinel".hex()
        # WAIT 2: both replicas hold the key before first_use returned.
        assert all(r.cli("EXISTS", key) == "1" for r in sentinels.replicas)
        results = await asyncio.gather(
            *(s.first_use(b"raced", TTL_S) for _ in range(100) for s in (store, other))
        )
        assert results.count(True) == 1
    finally:
        await store.close()
        await other.close()


async def test_unknown_master_name_fails_closed(sentinels: SentinelSetup) -> None:
    url = sentinels.url.replace("/mymaster/", "/no-such-master/")
    store = RedisReplayStore.from_url(url, timeout_s=0.5)
    try:
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"k", TTL_S)
        assert not await store.ping()
    finally:
        await store.close()


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
