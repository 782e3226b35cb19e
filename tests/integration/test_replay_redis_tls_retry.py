"""RedisReplayStore against real redis-server processes: TLS with client certificates, ACL
users and error replies, safe retries after a lost reply, and WAIT for replicas (writes and
the health ping)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support import redis_topologies as topologies
from tests.support.lossy_proxy import ReplyLosingProxy
from tests.support.redis_server import RedisServer, missing_redis_binaries
from tests.support.redis_topologies import wait_until
from tests.support.threads import race_in_threads as race
from tests.support.tls_files import (
    TLS_PROBLEMS,
    assert_fails_closed,
    client_options,
    make_redis_tls,
)
from verifier.app import build_app
from verifier.config import load_settings
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable
from verifier.replay.breaker import BreakerState, CircuitBreaker

TTL_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def _redis_installed() -> None:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@contextlib.contextmanager
def store_for(url: str, **options: Any) -> Iterator[RedisReplayStore]:
    store = RedisReplayStore.from_url(url, **options)
    try:
        yield store
    finally:
        store.close()


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    tls = make_redis_tls(tmp_path_factory.mktemp("redis-tls"))
    with RedisServer(tls=tls) as server:
        yield server


def test_tls_with_a_client_certificate(tls_redis: RedisServer) -> None:
    tls = tls_redis.tls
    assert tls is not None and tls_redis.url.startswith("rediss://")
    with store_for(tls_redis.url, timeout_s=1.0, **client_options(tls)) as store:
        assert store.ping()
        results = race([partial(store.first_use, b"over-tls", TTL_S)] * 20)
        assert results.count(True) == 1 and results.count(False) == 19


@pytest.mark.parametrize("problem", TLS_PROBLEMS)
def test_tls_failures_fail_closed(tls_redis: RedisServer, tmp_path: Path, problem: str) -> None:
    assert tls_redis.tls is not None
    assert_fails_closed(tls_redis.url, tls_redis.tls, problem, tmp_path)


# --- ACL users, passwords, error replies --------------------------------------------------------


def test_least_privilege_acl_user(redis_server: RedisServer) -> None:
    # The permissions docs/replay.md asks for: our key prefix, and SET GET WAIT PING only.
    redis_server.cli(
        "ACL", "SETUSER", "dpop", "on", ">pw", "resetkeys", "~dpop:jti:*",
        "-@all", "+set", "+get", "+wait", "+ping",
    )  # fmt: skip
    redis_server.cli("ACL", "SETUSER", "default", "off")
    with store_for(redis_server.url, username="dpop", password="pw") as store:
        assert store.ping()
        assert store.first_use(b"acl", TTL_S)
        assert not store.first_use(b"acl", TTL_S)
    for username, password in (("dpop", "wrong"), (None, None), ("nobody", "pw")):
        with store_for(redis_server.url, username=username, password=password) as store:
            assert not store.ping()
            with pytest.raises(ReplayStoreUnavailable):
                store.first_use(b"k", TTL_S)


def test_acl_user_and_password_file_through_the_settings(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.cli(
        "ACL", "SETUSER", "dpop", "on", ">pw-from-file", "resetkeys", "~dpop:jti:*",
        "-@all", "+set", "+get", "+wait", "+ping",
    )  # fmt: skip
    redis_server.cli("ACL", "SETUSER", "default", "off")
    password_file = tmp_path / "redis-password"
    password_file.write_text("pw-from-file\n")
    settings = load_settings(
        environ={
            "DPOP_REPLAY_URL": redis_server.url,
            "DPOP_REDIS_USERNAME": "dpop",
            "DPOP_REDIS_PASSWORD_FILE": str(password_file),
            "DPOP_REPLAY_TIMEOUT_MS": "500",
        }
    )
    store = build_app(settings).replay
    try:
        assert store.ping()
        assert store.first_use(b"acl", TTL_S)
        assert not store.first_use(b"acl", TTL_S)
    finally:
        store.close()


def test_password_without_a_user(redis_server: RedisServer) -> None:
    redis_server.cli("CONFIG", "SET", "requirepass", "s3cret")
    with store_for(redis_server.url, password="s3cret") as store:
        assert store.first_use(b"k", TTL_S)
    with (
        store_for(redis_server.url, password="wrong") as store,
        pytest.raises(ReplayStoreUnavailable),
    ):
        store.first_use(b"k2", TTL_S)


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
                store.first_use(b"denied-%d" % i, TTL_S)
        assert breaker.state is BreakerState.OPEN


def test_a_renamed_set_command_is_unavailable() -> None:
    with (
        RedisServer(options={"rename-command": 'SET ""'}) as server,
        store_for(server.url) as store,
        pytest.raises(ReplayStoreUnavailable, match="unknown command"),
    ):
        store.first_use(b"k", TTL_S)


# --- Retries: a lost reply is never a false replay ---------------------------------------------


def test_a_retry_after_a_lost_reply_recognises_its_own_write(
    redis_server: RedisServer,
) -> None:
    with (
        ReplyLosingProxy(redis_server.port) as proxy,
        store_for(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=1.0, retries=1) as store,
    ):
        assert store.first_use(b"warm-up", TTL_S)  # a pooled, ready connection
        proxy.lose_next_reply()
        # SET NX ran in Redis, its reply was lost, the retry found our own token: first use.
        assert store.first_use(b"proof", TTL_S)
        assert proxy.replies_lost == 1
        assert redis_server.cli("EXISTS", "dpop:jti:" + b"proof".hex()) == "1"
        assert not store.first_use(b"proof", TTL_S)


def test_without_retries_a_lost_reply_fails_closed(redis_server: RedisServer) -> None:
    with (
        ReplyLosingProxy(redis_server.port) as proxy,
        store_for(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=1.0, retries=0) as store,
    ):
        assert store.first_use(b"warm-up", TTL_S)
        proxy.lose_next_reply()
        with pytest.raises(ReplayStoreUnavailable):
            store.first_use(b"proof", TTL_S)
        assert proxy.replies_lost == 1
        # The write did land: the same proof is now a replay (never accepted twice).
        assert not store.first_use(b"proof", TTL_S)


# --- WAIT for replicas --------------------------------------------------------------------------


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
        assert store.ping()
        assert store.first_use(b"replicated", TTL_S)
        # Acknowledged by the replica before first_use returned.
        assert replica.cli("EXISTS", "dpop:jti:" + b"replicated".hex()) == "1"
        assert not store.first_use(b"replicated", TTL_S)
        replica.stop()
        wait_until(
            lambda: "connected_slaves:0" in master.cli("INFO", "replication"),
            10,
            "the master to notice",
        )
        with pytest.raises(ReplayStoreUnavailable, match="0 of 1"):
            store.first_use(b"unreplicated", TTL_S)
        # The key stays on the master: the proof is never accepted later either.
        assert not store.first_use(b"unreplicated", TTL_S)
        assert not store.ping()  # no replica connected


def test_too_few_replicas_fail_closed_and_ping_says_so(
    master_with_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, _ = master_with_replica
    # Two replicas asked for, one connected. Whether that one acknowledges within 50 ms depends
    # on how busy the machine is, so the count may be 0 or 1; never 2, and never an answer.
    with store_for(master.url, timeout_s=1.0, wait_replicas=2, wait_timeout_s=0.05) as store:
        assert not store.ping()
        with pytest.raises(ReplayStoreUnavailable, match=r"only [01] of 2 Redis replicas"):
            store.first_use(b"under-replicated", TTL_S)
        # The key stays on the master: the proof is never accepted later either.
        assert not store.first_use(b"under-replicated", TTL_S)


def test_a_retried_write_is_still_waited_for(
    master_with_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = master_with_replica
    with (
        ReplyLosingProxy(master.port) as proxy,
        store_for(
            f"redis://127.0.0.1:{proxy.port}/0", timeout_s=1.0, wait_replicas=1, wait_timeout_s=1.0
        ) as store,
    ):
        assert store.first_use(b"warm-up-wait", TTL_S)
        proxy.lose_next_reply()
        assert store.first_use(b"retried-wait", TTL_S)
        assert proxy.replies_lost == 1
        assert replica.cli("EXISTS", "dpop:jti:" + b"retried-wait".hex()) == "1"
