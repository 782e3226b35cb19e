"""Client CPU per replay write: the store's lean RESP client against redis-py's synchronous
client with hiredis, and the memory store, in one run; the same two Redis clients through
Sentinel and on a Redis Cluster.

    .venv/bin/python bench/bench_replay_cpu.py [--n 20000] [--rounds 3] [--threads 8]
                                               [--skip-sentinel] [--skip-cluster]

Starts one ``redis-server`` on loopback, a Sentinel set-up (a master, one replica, three
sentinels) for the Sentinel rows and a 3-master cluster for the Cluster rows. Each client
writes fresh 32-byte keys with a TTL of 66 s, one call at a time: the store's ``first_use``
(``SET prefix+hex(key) token NX PX``, the service's defaults otherwise), and redis-py's
``set(prefix+hex(key), token, nx=True, px=...)`` with the same key and a fresh 16-byte token.
This process's CPU time (user + system, from ``os.times``; Redis runs in its own process) is
divided by the calls. Rounds alternate between the clients; each figure is the median of
``--rounds``. Also: the lean client and the memory store driven by ``--threads`` threads.

System time is mostly the kernel's share of one loopback round trip (send, wake-up, receive),
paid by any client that waits for each reply; user time is the client's own Python work.

:func:`client_cpu_per_write` is the standalone comparison alone, for other scripts
(``bench/run.py`` prints it as a row).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import redis.utils
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from tests.support.redis_server import RedisServer
from tests.support.redis_topologies import cluster_setup, sentinel_setup
from verifier.replay import MemoryReplayStore, RedisReplayStore, ReplayStore
from verifier.replay.redis_url import RedisMode, parse_redis_url

TTL_S = 66.0
_TTL_MS = int(TTL_S * 1000)
_PREFIX = b"dpop:jti:"
_CHUNK = 1000
"""Calls per turn when :func:`client_cpu_per_write` alternates the two clients."""

Run = Callable[[list[bytes]], None]


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


def measure(run: Run, n: int) -> Sample:
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


def store_writes(store: ReplayStore) -> Run:
    """``first_use`` of a store (the lean RESP client, or memory), one call at a time."""

    def run(batch: list[bytes]) -> None:
        first_use = store.first_use
        for key in batch:
            assert first_use(key, TTL_S)

    return run


def redis_py_writes(client: redis.Redis | RedisCluster) -> Run:
    """redis-py's ``SET NX PX`` with the store's key and a fresh token, one call at a time."""

    def run(batch: list[bytes]) -> None:
        for key in batch:
            redis_key = _PREFIX + key.hex().encode("ascii")
            assert client.set(redis_key, secrets.token_bytes(16), nx=True, px=_TTL_MS)

    return run


def threaded(run: Run, threads: int) -> Run:
    def run_all(batch: list[bytes]) -> None:
        shares = [batch[i::threads] for i in range(threads)]
        workers = [threading.Thread(target=run, args=(share,)) for share in shares]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    return run_all


def redis_py_client(url: str) -> redis.Redis | RedisCluster:
    """redis-py's synchronous client for a plaintext ``redis[+sentinel|+cluster]://`` URL, with
    hiredis (refused without it: the comparison would not be the one named)."""
    if not redis.utils.HIREDIS_AVAILABLE:
        raise RuntimeError("hiredis is not installed: pip install 'hiredis>=3'")
    target = parse_redis_url(url)
    if target.tls:
        raise ValueError("plaintext URLs only")
    if target.mode is RedisMode.SENTINEL:
        sentinel = Sentinel(list(target.nodes), socket_timeout=1.0)  # type: ignore[no-untyped-call, unused-ignore]
        master: redis.Redis = sentinel.master_for(target.service_name, socket_timeout=1.0)
        return master
    if target.mode is RedisMode.CLUSTER:
        nodes = [ClusterNode(h, p) for h, p in target.nodes]  # type: ignore[no-untyped-call, unused-ignore]
        return RedisCluster(startup_nodes=nodes)
    ((host, port),) = target.nodes
    return redis.Redis(host=host, port=port, db=target.db, socket_timeout=1.0)


def client_cpu_per_write(redis_url: str, n: int) -> dict[str, float]:
    """µs of this process's CPU (user + system, ``os.times``) per ``SET NX PX`` of ``n``
    fresh keys on the Redis at ``redis_url``: ``"lean"`` (the replay store's ``first_use``)
    and ``"redis-py+hiredis"`` (redis-py's synchronous client). The two alternate in turns of
    1,000 calls after a warm-up, so both see the same machine; each figure covers all ``n``
    calls (``os.times`` ticks at 10 ms: keep ``n`` in the thousands). Every thread of the
    process counts: run it while nothing else does.
    """
    store = RedisReplayStore.from_url(redis_url, timeout_s=1.0)
    client = redis_py_client(redis_url)
    runs = {"lean": store_writes(store), "redis-py+hiredis": redis_py_writes(client)}
    try:
        for run in runs.values():  # warm-up: connections, code paths
            run(keys(200))
        cpu_s = dict.fromkeys(runs, 0.0)
        done = 0
        while done < n:
            chunk = min(_CHUNK, n - done)
            for name, run in runs.items():
                batch = keys(chunk)
                before = os.times()
                run(batch)
                after = os.times()
                cpu_s[name] += (after.user - before.user) + (after.system - before.system)
            done += chunk
        return {name: seconds / n * 1e6 for name, seconds in cpu_s.items()}
    finally:
        store.close()
        client.close()


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

    with RedisServer() as server, contextlib.ExitStack() as stack:
        lean_store = RedisReplayStore.from_url(server.url, timeout_s=1.0)
        stack.callback(lean_store.close)
        redis_py = redis_py_client(server.url)
        stack.callback(redis_py.close)
        lean = store_writes(lean_store)
        memory = store_writes(MemoryReplayStore(max_entries=10_000_000))
        clients: dict[str, Run] = {
            "redis-py sync + hiredis": redis_py_writes(redis_py),
            "lean RESP (first_use)": lean,
            "memory (first_use)": memory,
            f"lean RESP, {args.threads} threads": threaded(lean, args.threads),
            f"memory, {args.threads} threads": threaded(memory, args.threads),
        }
        urls: dict[str, str] = {}
        if not args.skip_sentinel:
            urls["Sentinel"] = stack.enter_context(sentinel_setup(replicas=1, sentinels=3)).url
        if not args.skip_cluster:
            urls["Cluster"] = stack.enter_context(cluster_setup(masters=3)).url
        for mode, url in urls.items():
            via_py = redis_py_client(url)
            stack.callback(via_py.close)
            via_lean = RedisReplayStore.from_url(url, timeout_s=1.0)
            stack.callback(via_lean.close)
            clients[f"{mode}, redis-py + hiredis"] = redis_py_writes(via_py)
            clients[f"{mode}, lean RESP"] = store_writes(via_lean)
        for run in clients.values():  # warm-up: connections, pools, code paths
            measure(run, 500)
        samples: dict[str, list[Sample]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, run in clients.items():
                samples[name].append(measure(run, args.n))

    results = {
        name: Sample(
            statistics.median(s.user_us for s in runs),
            statistics.median(s.system_us for s in runs),
            statistics.median(s.per_second for s in runs),
        )
        for name, runs in samples.items()
    }
    base = results["redis-py sync + hiredis"]
    print(
        f"\nreplay write (SET NX PX, one call at a time unless threaded), n={args.n} per round, "
        f"median of {args.rounds} rounds, cores={os.cpu_count()}, "
        f"python={sys.version.split()[0]}, {redis_version()}, redis-py {redis.__version__}"
    )
    print(
        f"{'client':<30} {'CPU us/op':>10} {'user':>7} {'system':>7} {'x redis-py':>11} "
        f"{'ops/s':>9} {'x redis-py':>11}"
    )
    for name, sample in results.items():
        print(
            f"{name:<30} {sample.cpu_us:>10.1f} {sample.user_us:>7.1f} {sample.system_us:>7.1f} "
            f"{sample.cpu_us / base.cpu_us:>11.2f} {sample.per_second:>9,.0f} "
            f"{sample.per_second / base.per_second:>11.2f}"
        )


if __name__ == "__main__":
    main()
