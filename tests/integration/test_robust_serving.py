"""No caller can stall the verifier: real service processes, real gRPC over loopback.

A call that never delivers its request message holds no worker thread and cannot use up the
call cap; it is failed when its receive deadline passes; a peer that vanishes is reaped by
HTTP/2 keepalive; calls beyond the cap get RESOURCE_EXHAUSTED, never CANCELLED.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench._load import (
    CHECK,
    StalledCalls,
    channel,
    closed_loop,
    count_allowed,
    fresh_requests,
    outcomes,
)
from tests.support.redis_server import RedisServer
from tests.support.service import ServiceProcess, TestIssuer, running_service
from verifier.cli.mint import generate_key
from verifier.server.health import seconds_to_not_serving

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def issuer(tmp_path: Path) -> TestIssuer:
    return TestIssuer(tmp_path)


async def health_within(address: str, seconds: float, service: str = "") -> int:
    """The health status, asked with a deadline of ``seconds`` (a stalled server misses it)."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=seconds
        )
    return int(reply.status)


async def allowed_checks(service: ServiceProcess, issuer: TestIssuer, n: int, callers: int) -> int:
    """Send ``n`` valid Checks (fresh proofs) with ``callers`` concurrent callers; return how
    many were allowed (any denial or transport error raises)."""
    client = generate_key("ES256")
    requests = fresh_requests(CHECK, client, issuer.token(client), n)
    run = await closed_loop(service.address, CHECK, requests, callers, connections=2)
    return count_allowed(CHECK, run.answers)


async def test_3000_stalled_calls_over_60_connections_stop_no_one(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    # More stalled calls than DPOP_MAX_CONCURRENT_CALLS (1024 by default) and than threads (16).
    env = {"DPOP_RECEIVE_TIMEOUT_MS": "15000"}
    with running_service(tmp_path, issuer, env) as service:
        async with StalledCalls(service.address, 3000, 60) as stalled:
            assert await health_within(service.address, 1.0) == SERVING
            assert await allowed_checks(service, issuer, 300, callers=16) == 300
            assert await health_within(service.address, 1.0) == SERVING
            assert stalled.pending() == 3000  # still held open while the others were served
            # The server had every one of them: each ends at its receive deadline.
            assert await stalled.outcomes() == Counter({"DEADLINE_EXCEEDED": 3000})


async def test_a_call_that_never_sends_its_message_fails_at_the_receive_deadline(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    with running_service(tmp_path, issuer, {"DPOP_RECEIVE_TIMEOUT_MS": "300"}) as service:
        async with StalledCalls(service.address, 3, 1) as stalled:
            assert await stalled.outcomes() == Counter({"DEADLINE_EXCEEDED": 3})
        assert await allowed_checks(service, issuer, 5, callers=1) == 5


async def test_calls_waiting_for_their_message_are_bounded_apart_from_the_call_cap(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    # 5 waiting calls fill DPOP_MAX_PENDING_CALLS; the 6th is refused at once. The call cap
    # (2) is untouched by them: complete calls are still answered.
    env = {
        "DPOP_MAX_PENDING_CALLS": "5",
        "DPOP_MAX_CONCURRENT_CALLS": "2",
        "DPOP_RECEIVE_TIMEOUT_MS": "60000",
    }
    with running_service(tmp_path, issuer, env) as service:
        async with StalledCalls(service.address, 5, 1) as held:
            async with StalledCalls(service.address, 1, 1) as extra:
                assert await extra.outcomes() == Counter({"RESOURCE_EXHAUSTED": 1})
            assert held.pending() == 5
        # Released (half-closed without a message): the slots are free again.
        assert await allowed_checks(service, issuer, 20, callers=2) == 20


async def test_past_the_call_cap_the_answer_is_resource_exhausted(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    # 2,000 calls at once over 20 connections against a cap of 8: every call is either allowed
    # or refused with RESOURCE_EXHAUSTED (never CANCELLED, never a hang), and some of each.
    env = {"DPOP_MAX_CONCURRENT_CALLS": "8"}
    client = generate_key("ES256")
    with running_service(tmp_path, issuer, env) as service:
        requests = fresh_requests(CHECK, client, issuer.token(client), 2000)
        channels = [channel(service.address, i + 1) for i in range(20)]
        try:
            # Ready first: each connection then knows the server's MAX_CONCURRENT_STREAMS.
            await asyncio.gather(*(ch.channel_ready() for ch in channels))
            calls = [ch.unary_unary(CHECK) for ch in channels]
            results = await asyncio.gather(
                *(calls[i % 20](r, timeout=60) for i, r in enumerate(requests)),
                return_exceptions=True,
            )
        finally:
            for ch in channels:
                await ch.close()
    answers = [r for r in results if isinstance(r, bytes)]
    codes = Counter(r.code().name for r in results if isinstance(r, grpc.aio.AioRpcError))
    others = [r for r in results if not isinstance(r, bytes | grpc.aio.AioRpcError)]
    assert not others
    assert set(codes) == {"RESOURCE_EXHAUSTED"}
    assert count_allowed(CHECK, answers) == len(answers) > 0


class BlackHole:
    """A TCP relay that can go silent: after :meth:`vanish` it neither forwards nor closes,
    like a peer whose host died or whose network path broke (no FIN, no RST)."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._silent = False
        self.upstream_closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> BlackHole:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def vanish(self) -> None:
        self._silent = True

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self._target_port)

        async def pump(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, from_server: bool
        ) -> None:
            while data := await reader.read(65536):
                if not self._silent:
                    writer.write(data)
                    await writer.drain()
            if from_server:
                self.upstream_closed.set()

        for task in (pump(client_r, server_w, False), pump(server_r, client_w, True)):
            self._tasks.add(asyncio.create_task(task))


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


async def test_a_peer_that_vanishes_is_reaped_within_the_keepalive_bound(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    # Documented bound: DPOP_KEEPALIVE_SECONDS + DPOP_KEEPALIVE_TIMEOUT_SECONDS. The peer holds
    # a call that waits for its message (receive deadline far away), then goes silent.
    keepalive, timeout = 1, 1
    env = {
        "DPOP_KEEPALIVE_SECONDS": str(keepalive),
        "DPOP_KEEPALIVE_TIMEOUT_SECONDS": str(timeout),
        "DPOP_RECEIVE_TIMEOUT_MS": "600000",
    }
    with running_service(tmp_path, issuer, env) as service:
        async with (
            BlackHole(_port(service.address)) as hole,
            StalledCalls(hole.address, 1, 1),
        ):
            hole.vanish()
            vanished = time.monotonic()
            # Slack for scheduling on a busy machine; a missing keepalive never closes it.
            await asyncio.wait_for(hole.upstream_closed.wait(), keepalive + timeout + 5)
            reaped_after = time.monotonic() - vanished
    assert reaped_after >= keepalive  # the server did wait for an answer to its ping


def test_idle_connections_that_never_speak_http2_are_closed(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    # A connection that sends nothing (no preface) holds no thread, and is closed by the
    # handshake deadline; meanwhile the service answers others.
    with running_service(tmp_path, issuer) as service:
        host, port = service.address.rsplit(":", 1)
        with contextlib.ExitStack() as stack:
            silent = [
                stack.enter_context(socket.create_connection((host, int(port)))) for _ in range(200)
            ]
            assert service.health_status() == "SERVING"
            silent[0].settimeout(30)
            while silent[0].recv(4096):  # the server's SETTINGS, if any, then its close
                pass


# --- health that tells the truth ---------------------------------------------------------------


class HealthLog:
    """Every status a ``Watch`` on the health service reports, with when it arrived."""

    def __init__(self, address: str, service: str = "") -> None:
        self.seen: list[tuple[float, int]] = []
        self._channel = grpc.aio.insecure_channel(address)
        stub = health_pb2_grpc.HealthStub(self._channel)
        self._stream = stub.Watch(health_pb2.HealthCheckRequest(service=service))
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for reply in self._stream:
            self.seen.append((time.monotonic(), int(reply.status)))

    async def until(self, status: int, seconds: float) -> float:
        """Wait for ``status``; return when it was reported."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for at, seen in self.seen:
                if seen == status:
                    return at
            await asyncio.sleep(0.05)
        raise AssertionError(f"health never became {status} within {seconds}s: {self.seen}")

    async def close(self) -> None:
        self._stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._channel.close()


async def keep_busy(address: str, issuer: TestIssuer, stop: asyncio.Event) -> Counter[str]:
    """Closed-loop Checks with fresh proofs (32 callers) until ``stop``: the service's one
    process is at 100 % of what it can do. Returns the answers by outcome."""
    client = generate_key("ES256")
    token = issuer.token(client)
    seen: Counter[str] = Counter()
    while not stop.is_set():
        requests = fresh_requests(CHECK, client, token, 1000)
        run = await closed_loop(address, CHECK, requests, 32, connections=2)
        seen.update(outcomes(CHECK, run.answers))
    return seen


async def test_a_saturated_verifier_stays_ready_and_turns_unready_when_redis_dies(
    tmp_path: Path, issuer: TestIssuer, redis_server: RedisServer
) -> None:
    env = {"DPOP_REPLAY_URL": redis_server.url}
    with running_service(tmp_path, issuer, env) as service:
        health = HealthLog(service.address)
        try:
            await health.until(SERVING, 10)
            stop = asyncio.Event()
            load = asyncio.create_task(keep_busy(service.address, issuer, stop))
            await asyncio.sleep(15)  # the old probe flapped every 15-20 s under this load
            assert [status for _, status in health.seen] == [SERVING]
            redis_server.kill()
            killed = time.monotonic()
            down_at = await health.until(NOT_SERVING, seconds_to_not_serving() + 5)
            stop.set()
            answers = await load
        finally:
            await health.close()
    assert down_at - killed <= seconds_to_not_serving()
    assert answers["allow"] > 1000
    assert set(answers) <= {"allow", "replay_store_unavailable"}, answers
    assert not [line for line in service.stderr_lines if "Traceback" in line]
