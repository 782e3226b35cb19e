"""Client CPU per replay write: redis-py (async, the io-loop path), the lean blocking client
(worker threads), and the memory store, in one run; the same two Redis clients through Sentinel
and on a Redis Cluster.

    .venv/bin/python bench/bench_replay_cpu.py [--n 20000] [--rounds 3] [--threads 8]
                                               [--skip-sentinel] [--skip-cluster]

Starts one ``redis-server`` on loopback, a Sentinel set-up (a master, one replica, three
sentinels) for the Sentinel rows and a 3-master cluster for the Cluster rows. For each client,
``--n`` calls of ``first_use`` (fresh 32-byte keys, TTL 66 s, the service's defaults
otherwise) run one at a time, and this process's CPU time (user + system, from ``os.times``;
Redis runs in its own process) is divided by the calls. Rounds alternate between the clients;
each figure is the median of ``--rounds``. Also: the blocking client and the memory store
driven by ``--threads`` threads at once.

System time is mostly the kernel's share of one loopback round trip (send, wake-up, receive),
paid by any client that waits for each reply; user time is the client's own Python work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import cluster_setup, sentinel_setup
from verifier.replay import MemoryReplayStore, RedisReplayStore

TTL_S = 66.0


@dataclass(frozen=True)
class Sample:
    user_us: float
    system_us: float
    per_second: float

    @property
    def cpu_us(self) -> float:
        return self.user_us + self.system_us


def keys(n: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(n)]


def measure(run: Callable[[list[bytes]], None], n: int) -> Sample:
    batch = keys(n)
    before = os.times()
    started = time.perf_counter()
    run(batch)
    elapsed = time.perf_counter() - started
    after = os.times()
    return Sample(
        (after.user - before.user) / n * 1e6,
        (after.system - before.system) / n * 1e6,
        n / elapsed,
    )


class AsyncRedisPy:
    """The current path: redis-py's asyncio client, awaited on a running event loop."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._store = RedisReplayStore.from_url(url, timeout_s=1.0)

    def __call__(self, batch: list[bytes]) -> None:
        async def drive() -> None:
            for key in batch:
                assert await self._store.first_use(key, TTL_S)

        self._loop.run_until_complete(drive())

    def close(self) -> None:
        self._loop.run_until_complete(self._store.close())
        self._loop.close()


class Blocking:
    """``first_use_blocking`` of a store (the lean RESP client, or memory)."""

    def __init__(self, store: RedisReplayStore | MemoryReplayStore) -> None:
        self.store = store

    def __call__(self, batch: list[bytes]) -> None:
        first_use = self.store.first_use_blocking
        for key in batch:
            assert first_use(key, TTL_S)


def threaded(blocking: Blocking, threads: int) -> Callable[[list[bytes]], None]:
    def run(batch: list[bytes]) -> None:
        shares = [batch[i::threads] for i in range(threads)]
        workers = [threading.Thread(target=blocking, args=(share,)) for share in shares]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    return run


def redis_version() -> str:
    completed = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return " ".join(completed.stdout.split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="threads for the concurrent rows")
    parser.add_argument("--skip-sentinel", action="store_true", help="no Sentinel rows")
    parser.add_argument("--skip-cluster", action="store_true", help="no Cluster rows")
    args = parser.parse_args()

    with RedisServer() as redis, contextlib.ExitStack() as stack:
        redis_py = AsyncRedisPy(redis.url)
        lean_store = RedisReplayStore.from_url(redis.url, timeout_s=1.0)
        lean = Blocking(lean_store)
        memory = Blocking(MemoryReplayStore(max_entries=10_000_000))
        clients: dict[str, Callable[[list[bytes]], None]] = {
            "redis-py async (io loop)": redis_py,
            "lean RESP, blocking": lean,
            "memory, blocking": memory,
            f"lean RESP, {args.threads} threads": threaded(lean, args.threads),
            f"memory, {args.threads} threads": threaded(memory, args.threads),
        }
        closing: list[RedisReplayStore] = [lean_store]
        topologies = {
            "Sentinel": None if args.skip_sentinel else sentinel_setup(replicas=1, sentinels=3),
            "Cluster": None if args.skip_cluster else cluster_setup(masters=3),
        }
        for mode, setup in topologies.items():
            if setup is None:
                continue
            url = stack.enter_context(setup).url
            via_py = AsyncRedisPy(url)
            stack.callback(via_py.close)
            via_lean = RedisReplayStore.from_url(url, timeout_s=1.0)
            closing.append(via_lean)
            clients[f"{mode}, redis-py (io loop)"] = via_py
            clients[f"{mode}, lean RESP"] = Blocking(via_lean)
        for run in clients.values():  # warm-up: connections, pools, code paths
            measure(run, 500)
        samples: dict[str, list[Sample]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, run in clients.items():
                samples[name].append(measure(run, args.n))
        redis_py.close()
        for store in closing:
            asyncio.run(store.close())

    results = {
        name: Sample(
            statistics.median(s.user_us for s in runs),
            statistics.median(s.system_us for s in runs),
            statistics.median(s.per_second for s in runs),
        )
        for name, runs in samples.items()
    }
    base = results["redis-py async (io loop)"]
    print(
        f"\nreplay write (SET NX PX, one call at a time unless threaded), n={args.n} per round, "
        f"median of {args.rounds} rounds, cores={os.cpu_count()}, "
        f"python={sys.version.split()[0]}, {redis_version()}"
    )
    print(
        f"{'client':<28} {'CPU us/op':>10} {'user':>7} {'system':>7} {'x redis-py':>11} "
        f"{'ops/s':>9} {'x redis-py':>11}"
    )
    for name, sample in results.items():
        print(
            f"{name:<28} {sample.cpu_us:>10.1f} {sample.user_us:>7.1f} {sample.system_us:>7.1f} "
            f"{sample.cpu_us / base.cpu_us:>11.2f} {sample.per_second:>9,.0f} "
            f"{sample.per_second / base.per_second:>11.2f}"
        )


if __name__ == "__main__":
    main()
