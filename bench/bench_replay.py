"""Replay-store benchmark: what shared replay state costs, measured in one run.

    .venv/bin/python bench/bench_replay.py [--n 3000] [--concurrency 16] [--rounds 3] [--quick]

Starts real ``redis-server`` processes on loopback (standalone; a master with one replica for
``WAIT 1``; a 3-master cluster; a Sentinel set-up) and real ``dpop-verifier serve`` processes,
then prints:

  * ``Verify`` throughput over gRPC with pre-generated proofs (ES256 proofs and tokens), for
    the in-memory store and every Redis mode, as the median of ``--rounds`` alternating
    rounds, with p50/p99 latency and the ratio to the in-memory store;
  * the replay store alone (``first_use`` one call at a time, no gRPC): p50/p99 latency of
    the memory store, Redis, and Redis with ``WAIT 1``: the price of closing the
    replication hole;
  * Redis memory per recorded proof.

The load generator runs in this process on the same machine as the service and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import cluster_setup, sentinel_setup, wait_until
from tests.support.service import ServiceProcess, TestIssuer
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc as pb_grpc
from verifier.cli.mint import generate_key, make_proof
from verifier.replay import MemoryReplayStore, RedisReplayStore, ReplayStore

URL = "https://api.test/orders"


@dataclass(frozen=True)
class Mode:
    name: str
    env: dict[str, str]


@dataclass(frozen=True)
class Result:
    per_second: float
    p50_ms: float
    p99_ms: float
    denied: int
    """Requests not allowed (e.g. replay_store_unavailable on a deadline miss): reported, not
    hidden; a healthy run has none."""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def pregenerated(issuer: TestIssuer, n: int) -> list[pb.VerifyRequest]:
    client = generate_key("ES256")
    token = issuer.token(client, lifetime=3600)
    return [
        pb.VerifyRequest(
            method="GET",
            target_uri=URL,
            authorization=[f"DPoP {token}"],
            dpop=[make_proof(client, "GET", URL, access_token=token)],
        )
        for _ in range(n)
    ]


async def drive(address: str, requests: list[pb.VerifyRequest], concurrency: int) -> Result:
    latencies: list[float] = []
    denied = 0
    queue = list(reversed(requests))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.VerifierServiceStub(channel)
        await stub.Verify(pb.VerifyRequest(method="GET", target_uri=URL))  # warm the channel

        async def worker() -> None:
            nonlocal denied
            while queue:
                request = queue.pop()
                started = time.perf_counter()
                response = await stub.Verify(request)
                latencies.append(time.perf_counter() - started)
                if response.decision != pb.DECISION_ALLOW:
                    denied += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result(
        len(requests) / elapsed,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        denied,
    )


@contextlib.contextmanager
def service(issuer: TestIssuer, workdir: Path, env: dict[str, str]) -> Iterator[ServiceProcess]:
    config = workdir / f"config-{time.monotonic_ns()}.json"
    config.write_text(json.dumps(issuer.config()), encoding="utf-8")
    process = ServiceProcess(config, env)
    try:
        yield process
    finally:
        process.stop()


def bench_verify(
    modes: list[Mode], issuer: TestIssuer, workdir: Path, n: int, concurrency: int, rounds: int
) -> dict[str, Result]:
    """One service per mode, started up front; rounds alternate between modes."""
    results: dict[str, list[Result]] = {mode.name: [] for mode in modes}
    with contextlib.ExitStack() as stack:
        services = {m.name: stack.enter_context(service(issuer, workdir, m.env)) for m in modes}
        for process in services.values():
            process.wait_health("SERVING", timeout=15)
            asyncio.run(drive(process.address, pregenerated(issuer, 200), concurrency))  # warm-up
        for _ in range(rounds):
            for mode in modes:
                requests = pregenerated(issuer, n)
                address = services[mode.name].address
                results[mode.name].append(asyncio.run(drive(address, requests, concurrency)))
    return {
        name: Result(
            statistics.median(r.per_second for r in runs),
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
            sum(r.denied for r in runs),
        )
        for name, runs in results.items()
    }


def store_latencies(store: ReplayStore, n: int) -> tuple[float, float]:
    """first_use one call at a time: p50 and p99 in microseconds; closes the store."""
    latencies = []
    try:
        for i in range(n):
            key = os.urandom(32)
            started = time.perf_counter()
            assert store.first_use(key, 66.0), i
            latencies.append(time.perf_counter() - started)
    finally:
        store.close()
    return percentile(latencies, 0.5) * 1e6, percentile(latencies, 0.99) * 1e6


def redis_memory_per_key(server: RedisServer, n: int) -> float:
    server.cli("FLUSHALL")
    before = int(server.cli("INFO", "memory").split("used_memory:")[1].split()[0])
    store = RedisReplayStore.from_url(server.url, timeout_s=2.0)
    try:
        for _ in range(n):
            assert store.first_use(os.urandom(32), 66.0)
    finally:
        store.close()
    after = int(server.cli("INFO", "memory").split("used_memory:")[1].split()[0])
    return (after - before) / n


def redis_version() -> str:
    completed = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return " ".join(completed.stdout.split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="memory and standalone Redis only")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        issuer = TestIssuer(workdir)
        redis = stack.enter_context(RedisServer())
        modes = [Mode("memory://", {}), Mode("redis:// standalone", {"DPOP_REPLAY_URL": redis.url})]
        replicated = None
        if not args.quick:
            options = {"repl-diskless-sync-delay": "0"}
            replicated = stack.enter_context(RedisServer(options=options))
            replica_options = {**options, "replicaof": f"127.0.0.1 {replicated.port}"}
            replica = stack.enter_context(RedisServer(options=replica_options))
            wait_until(
                lambda: "master_link_status:up" in replica.cli("INFO", "replication"),
                10,
                "the replica",
            )
            sentinels = stack.enter_context(sentinel_setup(replicas=1, sentinels=3))
            cluster = stack.enter_context(cluster_setup(masters=3))
            wait_1 = {"DPOP_REDIS_WAIT_REPLICAS": "1", "DPOP_REDIS_WAIT_TIMEOUT_MS": "50"}
            modes += [
                Mode(
                    "redis:// + WAIT 1 (one replica)", {"DPOP_REPLAY_URL": replicated.url, **wait_1}
                ),
                Mode("redis+sentinel:// (1 replica)", {"DPOP_REPLAY_URL": sentinels.url}),
                Mode("redis+cluster:// (3 masters)", {"DPOP_REPLAY_URL": cluster.url}),
            ]

        verify = bench_verify(modes, issuer, workdir, args.n, args.concurrency, args.rounds)

        store_rows = [
            ("memory", store_latencies(MemoryReplayStore(), 2000)),
            ("redis", store_latencies(RedisReplayStore.from_url(redis.url), 2000)),
        ]
        if replicated is not None:
            waiting = RedisReplayStore.from_url(
                replicated.url, wait_replicas=1, wait_timeout_s=0.05
            )
            store_rows.append(("redis + WAIT 1", store_latencies(waiting, 2000)))
        bytes_per_key = redis_memory_per_key(redis, 20_000)

    print(
        f"\nVerify over gRPC on loopback, ES256, n={args.n} per round, "
        f"concurrency={args.concurrency}, median of {args.rounds} rounds, "
        f"cores={os.cpu_count()}, python={sys.version.split()[0]}, "
        f"{redis_version()}"
    )
    base = verify["memory://"].per_second
    header = f"{'replay store':<36} {'Verify/s':>10} {'x memory':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{header} {'denied':>7}")
    for name, result in verify.items():
        print(
            f"{name:<36} {result.per_second:>10,.0f} {result.per_second / base:>9.3f} "
            f"{result.p50_ms:>8.2f} {result.p99_ms:>8.2f} {result.denied:>7}"
        )
    print("\nreplay store alone, first_use one call at a time (2000 calls)")
    print(f"{'store':<36} {'p50 us':>10} {'p99 us':>10}")
    for name, (p50, p99) in store_rows:
        print(f"{name:<36} {p50:>10.0f} {p99:>10.0f}")
    print(f"\nRedis memory per recorded proof: {bytes_per_key:.0f} bytes (20,000 keys)")


if __name__ == "__main__":
    main()
