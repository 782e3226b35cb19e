"""RedisReplayStore against real redis-server processes: TLS with client certificates, ACL
users, safe retries after a lost reply, and WAIT for replicas."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import redis_topologies as topologies
from tests.support.lossy_proxy import ReplyLosingProxy
from tests.support.redis_server import RedisServer, missing_redis_binaries
from tests.support.tls_files import make_redis_tls, make_untrusted_ca
from verifier.app import build_app
from verifier.config import load_settings
from verifier.replay import RedisReplayStore, ReplayStoreUnavailable

TTL_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def _redis_installed() -> None:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@contextlib.asynccontextmanager
async def store_for(url: str, **options: Any) -> AsyncIterator[RedisReplayStore]:
    store = RedisReplayStore.from_url(url, **options)
    try:
        yield store
    finally:
        await store.close()


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    tls = make_redis_tls(tmp_path_factory.mktemp("redis-tls"))
    with RedisServer(tls=tls) as server:
        yield server


async def test_tls_with_a_client_certificate(tls_redis: RedisServer) -> None:
    tls = tls_redis.tls
    assert tls is not None and tls_redis.url.startswith("rediss://")
    async with store_for(
        tls_redis.url,
        ca_file=str(tls.ca_file),
        cert_file=str(tls.client_cert_file),
        key_file=str(tls.client_key_file),
        timeout_s=1.0,
    ) as store:
        assert await store.ping()
        assert await store.first_use(b"over-tls", TTL_S)
        assert not await store.first_use(b"over-tls", TTL_S)


@pytest.mark.parametrize("problem", ["no client certificate", "untrusted server"])
async def test_tls_failures_fail_closed(
    tls_redis: RedisServer, tmp_path: Path, problem: str
) -> None:
    tls = tls_redis.tls
    assert tls is not None
    options: dict[str, Any] = {"ca_file": str(tls.ca_file)}
    if problem == "untrusted server":
        options = {
            "ca_file": str(make_untrusted_ca(tmp_path)),
            "cert_file": str(tls.client_cert_file),
            "key_file": str(tls.client_key_file),
        }
    async with store_for(tls_redis.url, timeout_s=1.0, **options) as store:
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"k", TTL_S)
        assert not await store.ping()


async def test_plaintext_url_against_a_tls_server_fails_closed(tls_redis: RedisServer) -> None:
    url = tls_redis.url.replace("rediss://", "redis://")
    async with store_for(url, timeout_s=0.5) as store:
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"k", TTL_S)


# --- ACL user and password from a mounted file, through the settings --------------------------


async def test_least_privilege_acl_user_with_password_file(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # The permissions docs/replay.md asks for: our key prefix, and SET GET WAIT PING only.
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
    app = build_app(settings)
    try:
        assert await app.replay.ping()
        assert await app.replay.first_use(b"acl", TTL_S)
        assert not await app.replay.first_use(b"acl", TTL_S)
    finally:
        await app.close()
    async with store_for(redis_server.url, username="dpop", password="wrong") as store:
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"k", TTL_S)


# --- Retries: a lost reply is never a false replay ---------------------------------------------


async def test_a_retry_after_a_lost_reply_recognises_its_own_write(
    redis_server: RedisServer,
) -> None:
    async with (
        ReplyLosingProxy(redis_server.port) as proxy,
        store_for(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=1.0, retries=1) as store,
    ):
        assert await store.first_use(b"warm-up", TTL_S)  # a pooled, ready connection
        proxy.lose_next_reply()
        # SET NX ran in Redis, its reply was lost, the retry found our own token: first use.
        assert await store.first_use(b"proof", TTL_S)
        assert proxy.replies_lost == 1
        assert redis_server.cli("EXISTS", "dpop:jti:" + b"proof".hex()) == "1"
        assert not await store.first_use(b"proof", TTL_S)


async def test_without_retries_a_lost_reply_fails_closed(redis_server: RedisServer) -> None:
    async with (
        ReplyLosingProxy(redis_server.port) as proxy,
        store_for(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=1.0, retries=0) as store,
    ):
        assert await store.first_use(b"warm-up", TTL_S)
        proxy.lose_next_reply()
        with pytest.raises(ReplayStoreUnavailable):
            await store.first_use(b"proof", TTL_S)
        # The write did land: the same proof is now a replay (never accepted twice).
        assert not await store.first_use(b"proof", TTL_S)


# --- WAIT for replicas --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def master_with_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    with topologies.master_with_replica() as servers:
        yield servers


async def test_wait_for_one_replica_acknowledges_each_write(
    master_with_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = master_with_replica
    async with store_for(master.url, wait_replicas=1, wait_timeout_s=1.0) as store:
        assert await store.ping()
        assert await store.first_use(b"replicated", TTL_S)
        # Acknowledged by the replica before first_use returned.
        assert replica.cli("EXISTS", "dpop:jti:" + b"replicated".hex()) == "1"
        assert not await store.first_use(b"replicated", TTL_S)


async def test_too_few_replicas_fail_closed_and_ping_says_so(
    master_with_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, _ = master_with_replica
    # Redis expires a WAIT on its timer tick (1/hz, 100 ms by default): leave it room.
    async with store_for(master.url, timeout_s=1.0, wait_replicas=2, wait_timeout_s=0.05) as store:
        assert not await store.ping()
        with pytest.raises(ReplayStoreUnavailable, match="1 of 2"):
            await store.first_use(b"under-replicated", TTL_S)
        # The key stays on the master: the proof is never accepted later either.
        assert not await store.first_use(b"under-replicated", TTL_S)


async def test_a_retried_write_is_still_waited_for(
    master_with_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = master_with_replica
    async with (
        ReplyLosingProxy(master.port) as proxy,
        store_for(
            f"redis://127.0.0.1:{proxy.port}/0", timeout_s=1.0, wait_replicas=1, wait_timeout_s=1.0
        ) as store,
    ):
        assert await store.first_use(b"warm-up-wait", TTL_S)
        proxy.lose_next_reply()
        assert await store.first_use(b"retried-wait", TTL_S)
        assert proxy.replies_lost == 1
        assert replica.cli("EXISTS", "dpop:jti:" + b"retried-wait".hex()) == "1"
