"""Replay protection through real ``dpop-verifier serve`` processes sharing one real
redis-server: the race across two processes, Redis killed and paused under a steady stream of
requests, fail-open, and the bounded in-memory store under a flood."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer, missing_redis_binaries
from tests.support.service import ServiceProcess, TestIssuer, dpop_request, running_service
from tests.support.verify_load import SteadyStream, p99, reason, same_request_concurrently
from verifier.cli.mint import KeyPair, generate_key
from verifier.server.runtime import REPLAY_STORE_HEALTH_SERVICE

# Promptness bound for denials while Redis is dead or frozen: the store's deadline is 50 ms,
# after 5 failures the breaker answers at once; 250 ms leaves room for a busy CI machine.
PROMPT_P99_S = 0.25


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def client() -> KeyPair:
    return generate_key("ES256")


@pytest.fixture
def restore_redis(redis: RedisServer) -> Iterator[RedisServer]:
    """For tests that kill or freeze the shared Redis: it runs again afterwards."""
    yield redis
    if not redis.is_running():
        redis.start()
    else:
        redis.resume()


def test_one_proof_raced_through_two_processes_is_accepted_once(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair, redis: RedisServer
) -> None:
    # A generous deadline: this checks atomicity, not latency, on a possibly busy machine.
    env = {"DPOP_REPLAY_URL": redis.url, "DPOP_REPLAY_TIMEOUT_MS": "3000"}
    with (
        running_service(tmp_path, issuer, env) as one,
        running_service(tmp_path, issuer, env) as two,
    ):
        request = dpop_request(client, issuer.token(client))
        answers = same_request_concurrently([one, two], request, total=240)
    reasons = [reason(a) for a in answers]
    assert reasons.count("ok") == 1
    assert reasons.count("replayed") == len(answers) - 1


def test_killed_redis_denies_promptly_then_recovers_without_a_restart(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair, restore_redis: RedisServer
) -> None:
    redis = restore_redis
    env = {"DPOP_REPLAY_URL": redis.url}
    with (
        running_service(tmp_path, issuer, env) as one,
        running_service(tmp_path, issuer, env) as two,
    ):
        one.wait_health("SERVING")
        token = issuer.token(client)
        with SteadyStream([one, two], client, token) as stream:
            stream.wait_for("ok", after=0, timeout_s=10)
            redis.kill()
            killed_at = time.monotonic()
            one.wait_health("NOT_SERVING", timeout=5)
            two.wait_health("NOT_SERVING", timeout=5)
            time.sleep(0.5)
            redis.start()
            restarted_at = time.monotonic()
            resumed = stream.wait_for("ok", after=restarted_at, timeout_s=10)
            one.wait_health("SERVING", timeout=5)
        outage = [s for s in stream.samples if killed_at < s.sent_at < restarted_at]
        assert len(outage) >= 20
        assert {s.reason for s in outage} == {"replay_store_unavailable"}
        assert p99([s.latency_s for s in outage]) < PROMPT_P99_S
        assert resumed.sent_at - restarted_at < 10


def test_frozen_redis_is_bounded_by_timeouts_and_the_breaker(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair, restore_redis: RedisServer
) -> None:
    redis = restore_redis
    env = {"DPOP_REPLAY_URL": redis.url}
    with running_service(tmp_path, issuer, env) as service:
        service.wait_health("SERVING")
        with SteadyStream([service], client, issuer.token(client)) as stream:
            stream.wait_for("ok", after=0, timeout_s=10)
            redis.pause()  # SIGSTOP: connections stay open, nothing is answered
            paused_at = time.monotonic()
            try:
                service.wait_health("NOT_SERVING", timeout=5)
                time.sleep(max(0.0, paused_at + 2.0 - time.monotonic()))
            finally:
                redis.resume()
            resumed_at = time.monotonic()
            stream.wait_for("ok", after=resumed_at, timeout_s=10)
        stalled = [s for s in stream.samples if paused_at < s.sent_at < resumed_at - 0.1]
        assert len(stalled) >= 20
        assert {s.reason for s in stalled} == {"replay_store_unavailable"}
        latencies = [s.latency_s for s in stalled]
        assert p99(latencies) < PROMPT_P99_S
        assert max(latencies) < 1.0


def test_fail_open_accepts_while_redis_is_down_and_says_so(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair, redis_server: RedisServer
) -> None:
    env = {"DPOP_REPLAY_URL": redis_server.url, "DPOP_REPLAY_FAIL_OPEN": "true"}
    with running_service(tmp_path, issuer, env) as service:
        service.wait_health("SERVING")
        assert service.health_status(REPLAY_STORE_HEALTH_SERVICE) == "SERVING"
        token = issuer.token(client)
        request = dpop_request(client, token)
        assert reason(service.verify(**request)) == "ok"
        assert reason(service.verify(**request)) == "replayed"  # protected while Redis is up

        redis_server.kill()
        answers = [service.verify(**dpop_request(client, token)) for _ in range(30)]
        assert {reason(a) for a in answers} == {"ok"}
        _wait_status(service, REPLAY_STORE_HEALTH_SERVICE, "NOT_SERVING")
        assert service.health_status() == "SERVING"  # the server keeps serving, by choice

        redis_server.start()
        _wait_status(service, REPLAY_STORE_HEALTH_SERVICE, "SERVING")
        deadline = time.monotonic() + 10
        again = dpop_request(client, token)
        while reason(service.verify(**again)) != "ok" and time.monotonic() < deadline:
            again = dpop_request(client, token)
            time.sleep(0.1)
        assert reason(service.verify(**again)) == "replayed"
    log = "".join(service.stderr_lines)
    assert "DPOP_REPLAY_FAIL_OPEN=true" in log  # at start-up
    alarms = [line for line in service.stderr_lines if "ACCEPTED WITHOUT REPLAY" in line]
    assert 1 <= len(alarms) <= 3  # per occurrence, but rate-limited (30 occurrences)


def test_full_memory_store_refuses_new_proofs_but_still_catches_replays(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair
) -> None:
    env = {"DPOP_REPLAY_URL": "memory://", "DPOP_MEMORY_REPLAY_MAX_ENTRIES": "40"}
    with running_service(tmp_path, issuer, env) as service:
        token = issuer.token(client)
        requests = [dpop_request(client, token) for _ in range(50)]
        reasons = [reason(service.verify(**r)) for r in requests]
        assert reasons == ["ok"] * 40 + ["replay_store_unavailable"] * 10
        assert {reason(service.verify(**r)) for r in requests[:40]} == {"replayed"}


def _wait_status(service: ServiceProcess, name: str, status: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while service.health_status(name) != status:
        assert time.monotonic() < deadline, f"{name} never became {status}"
        time.sleep(0.1)
