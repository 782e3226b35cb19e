"""The benchmark suite: one command, one table, every figure a ratio measured in the same run.

    .venv/bin/python bench/run.py            (full run, about 3-5 minutes; `make bench`)
    .venv/bin/python bench/run.py --quick    (seconds; every row kind, tiny numbers; CI smoke)

The real service (``python -m verifier serve``) runs pinned to ``--service-cores`` (default core
0, ``taskset``); this process, the load generator, pins itself to another core, and starts
Redis and the OTLP sink there too. The generator sends pre-serialized requests, each with a
fresh proof (own ``jti``) bound to one JWT access token, over ``grpc.aio`` with uvloop, and
prints its own CPU use for every row. Rows:

* ``null``: a server on the service's stack whose ``Check``/``Verify`` answer a constant allow
  (bench/null_server.py); every service row is a ratio to it at the same concurrency;
* ``service``: ``Check`` (Envoy's CheckRequest) and ``Verify``, per proof alg, replay store
  (memory, real redis-server) and concurrency: throughput, p50/p90/p99, allowed, service CPU;
* ``rounds null`` / ``rounds floor`` / ``rounds service``: the targets' throughput ratios
  measured again as alternating rounds (null, floor, memory, Redis; best of ``--rounds``),
  which the targets use. The floor is the null server that verifies each proof's signature and
  does nothing else (``null_server.py --signature-only``): the bound for any verifier here;
* ``null on <stack>`` / ``floor on <stack>``: the null server and the floor on each server stack
  the service could run on (``threads``: its thread-pool ``grpc.server``; ``aio``:
  ``grpc.aio.server`` on asyncio; ``uvloop``: the same on uvloop), alternating rounds, as ratios
  to the thread-pool null server: which stack carries the most calls, empty and with a
  signature to verify;
* ``no stalled calls`` / ``stalled callers``: a service with 3,000 calls that never send their
  request message held open over 60 connections, against itself without them (alternating
  rounds), plus how long a health check took meanwhile;
* ``ours: <stand-in>``: each piece of our own code that stands in for a library (lean spans, the
  span batcher, the OTLP encoder, the decision counter, the lean RESP replay client) as
  operations per second, its ratio the library's CPU per operation over ours (in process;
  ``bench/bench_standins.py``);
* ``paced 50%``: open-loop runs at half the peak ES256 ``Check`` rate (Redis store), median p99;
* ``tracing off/on``: 100 % sampled traces exported over OTLP/gRPC to a local sink (and
  ``tracing+metrics``: metrics exported too), alternating rounds;
* ``workers=2``: ``DPOP_WORKERS=2`` over all the machine's cores, against one worker;
* ``raw verify`` / ``engine``: in process, the ``cryptography`` verify rate with a cached key,
  and the engine's full check (proof + token + memory replay), as a ratio to it;
* ``flood``: service RSS before and after a flood of unique proofs through a capped memory store.

Then the targets (issues 9 and 15) with PASS/FAIL (printed, never asserted) and the machine.
Any denial aborts the run with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cryptography
import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import bench_replay_cpu, bench_standins
from bench._load import (
    CHECK,
    FORWARD_AUTH_ANNOUNCEMENT,
    METHODS,
    URL,
    Denied,
    Run,
    StalledCalls,
    closed_loop,
    count_allowed,
    count_http_allowed,
    fresh_forward_auth_requests,
    fresh_requests,
    http_closed_loop,
    open_loop,
    outcomes,
)
from bench._procs import CpuUse, PinnedServer, clean_env, cores_text, cpu_use
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.service import AUDIENCE, ISSUER, TestIssuer
from verifier.app import build_app
from verifier.cli.mint import KeyPair, generate_key, make_proof
from verifier.config import IssuerSettings, Settings
from verifier.domain.model import RequestFacts
from verifier.dpop import proof as proofs
from verifier.jose.rfc7515 import verify_signature
from verifier.jose.rfc7517 import public_key_for_alg
from verifier.telemetry import DecisionLog, Telemetry

ROOT = Path(__file__).resolve().parent.parent
ALGS = ("ES256", "RS256", "EdDSA")
STORES = ("memory", "redis")
TARGET_ALG, TARGET_STORE = "ES256", "redis"


@dataclass
class Row:
    kind: str
    method: str = "-"
    alg: str = "-"
    store: str = "-"
    concurrency: str = "-"
    per_second: float = 0.0
    ratio: str = ""
    run: Run | None = None
    allowed: str = "-"
    cpu: CpuUse | None = None

    def cells(self) -> list[str]:
        def ms(fraction: float) -> str:
            return f"{self.run.percentile_ms(fraction):.2f}" if self.run else "-"

        return [
            self.kind,
            self.method,
            self.alg,
            self.store,
            self.concurrency,
            f"{self.per_second:,.0f}",
            self.ratio,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.allowed,
            f"{self.cpu.server:.2f}" if self.cpu else "-",
            f"{self.cpu.others:.2f}" if self.cpu else "-",
            f"{self.run.generator_load:.2f}" if self.run else "-",
        ]


HEADER = ["row", "method", "alg", "store", "conc", "req/s", "ratio", "p50 ms", "p90 ms", "p99 ms"]
HEADER += ["allowed", "svc cpu", "others", "gen cpu"]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flood: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, str]] = field(default_factory=list)
    stalled_health_ms: float | None = None

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {'  '.join(c for c in row.cells() if c)}", file=sys.stderr, flush=True)
        return row


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, runner: asyncio.Runner) -> None:
        self.args = args
        self.workdir = workdir
        self.runner = runner
        self.issuer = TestIssuer(workdir)
        self.clients: dict[str, tuple[KeyPair, str]] = {}
        for alg in {*args.algs, TARGET_ALG}:
            client = generate_key(alg)
            self.clients[alg] = (client, self.issuer.token(client, lifetime=3600))
        self.report = Report()

    # -- processes -------------------------------------------------------------------------

    def service(
        self, name: str, env: dict[str, str], cores: Sequence[int] | None = None, **config: Any
    ) -> PinnedServer:
        config_file = self.workdir / f"config-{name}.json"
        config_file.write_text(json.dumps(self.issuer.config(**config)), encoding="utf-8")
        full_env = {"DPOP_LISTEN": "127.0.0.1:0", "DPOP_CONFIG_FILE": str(config_file)}
        full_env.update(self.args.service_env)
        full_env.update(env)
        return PinnedServer(
            [sys.executable, "-m", "verifier", "serve"],
            cores or self.args.service_cores,
            clean_env(full_env),
            self.workdir / f"{name}.log",
            announce="dpop-verifier listening on",
        )

    def null_server(self, *options: str, name: str = "null") -> PinnedServer:
        env = clean_env({"DPOP_LISTEN": "127.0.0.1:0", **self.args.service_env})
        server = PinnedServer(
            [sys.executable, str(ROOT / "bench" / "null_server.py"), *options],
            self.args.service_cores,
            env,
            self.workdir / f"{name}.log",
            announce="null server listening on",
        )
        if options:
            return server
        self.null_stack = "unknown"
        for line in server.preamble:
            if line.startswith("null server stack:"):
                self.null_stack = line.split(":", 1)[1].strip()
        return server

    # -- measurements ----------------------------------------------------------------------

    def requests(self, method: str, alg: str, n: int) -> list[bytes]:
        client, token = self.clients[alg]
        return fresh_requests(method, client, token, n)

    def closed(
        self, server: PinnedServer, method: str, alg: str, concurrency: int, n: int | None = None
    ) -> tuple[Run, CpuUse]:
        """Warm up, then one measured closed-loop batch, and the CPU use meanwhile."""
        n = n or self.args.n
        warm = self.requests(method, alg, min(n, max(50, 2 * concurrency)))
        warmed = self.runner.run(
            closed_loop(server.address, method, warm, concurrency, server.connections)
        )
        try:
            count_allowed(method, warmed.answers)
        except Denied as exc:
            raise Denied(
                f"{exc} (warm-up, {server.log_file.stem}, {alg}, c={concurrency})"
            ) from None
        requests = self.requests(method, alg, n)
        with cpu_use(server) as cpu:
            run = self.runner.run(
                closed_loop(server.address, method, requests, concurrency, server.connections)
            )
        try:
            count_allowed(method, run.answers)
        except Denied as exc:
            raise Denied(
                f"{exc} ({server.log_file.stem}, {alg}, concurrency {concurrency})"
            ) from None
        return run, cpu

    def http_closed(
        self, server: PinnedServer, address: str, concurrency: int, n: int | None = None
    ) -> tuple[Run, CpuUse]:
        """:meth:`closed` for the forward-auth listener at ``address`` (ES256 proofs)."""
        n = n or self.args.n
        client, token = self.clients[TARGET_ALG]
        warm = fresh_forward_auth_requests(client, token, min(n, max(50, 2 * concurrency)))
        count_http_allowed(self.runner.run(http_closed_loop(address, warm, concurrency)).answers)
        requests = fresh_forward_auth_requests(client, token, n)
        with cpu_use(server) as cpu:
            run = self.runner.run(http_closed_loop(address, requests, concurrency))
        count_http_allowed(run.answers)
        return run, cpu

    def row(
        self,
        kind: str,
        server: PinnedServer,
        method_name: str,
        alg: str,
        store: str,
        concurrency: int,
        ratio_to: Callable[[float], str] = lambda _: "",
        n: int | None = None,
    ) -> Row:
        run, cpu = self.closed(server, METHODS[method_name], alg, concurrency, n)
        return self.report.add(
            Row(
                kind,
                method_name,
                alg,
                store,
                str(concurrency),
                run.per_second,
                ratio_to(run.per_second),
                run,
                f"{len(run.answers)}/{len(run.answers)}",
                cpu,
            )
        )


def ratio(base: float | None, name: str) -> Callable[[float], str]:
    """A row's ratio cell: its rate over ``base`` (empty without a base)."""
    return lambda rate: f"{rate / base:.2f} {name}" if base else ""


def itself(name: str) -> Callable[[float], str]:
    """The ratio cell of the row that is the base itself."""
    return lambda _: f"1.00 {name}"


def find(rows: list[Row], **where: str) -> list[Row]:
    return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]


def peak(rows: list[Row]) -> Row | None:
    return max(rows, key=lambda r: r.per_second) if rows else None


# -- sections ----------------------------------------------------------------------------------


def in_process(bench: Bench) -> None:
    n = bench.args.n_in_process
    for alg in bench.args.algs:
        client, token = bench.clients[alg]
        raw = raw_verify_rate(client, n)
        bench.report.add(Row("raw verify", alg=alg, per_second=raw, ratio="1.00 raw"))
        rate, driver = bench.runner.run(engine_rate(bench.issuer, client, token, n))
        bench.report.add(
            Row("engine", alg=alg, store="memory", per_second=rate, ratio=f"{rate / raw:.2f} raw")
        )
    bench.report.notes.append(
        f"engine: the full check in process ({driver}; proof + JWT token + memory replay, "
        "no gRPC, no telemetry); ratio = its rate / the raw verify rate"
    )


def raw_verify_rate(client: KeyPair, n: int) -> float:
    jws = proofs.parse_proof(make_proof(client, "GET", URL))
    key = public_key_for_alg(client.public_jwk, client.alg)
    started = time.perf_counter()
    for _ in range(n):
        verify_signature(client.alg, key, jws.signing_input, jws.signature)
    return n / (time.perf_counter() - started)


async def engine_rate(issuer: TestIssuer, client: KeyPair, token: str, n: int) -> tuple[float, str]:
    """Checks per second of the engine built as the service builds it (memory store)."""
    settings = Settings(
        issuers=(
            IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(issuer.jwks_file)),
        ),
        memory_replay_max_entries=max(4 * n, 1000),
    )
    app = build_app(settings, Telemetry(decision_log=DecisionLog("none")))
    await app.start()
    try:
        authorization = (f"DPoP {token}",)
        facts = [
            RequestFacts(
                "GET", URL, authorization, (make_proof(client, "GET", URL, access_token=token),)
            )
            for _ in range(n + 1)
        ]
        engine = app.engine

        def drive() -> float:
            first = engine.verify(facts[0])  # the token is verified and cached here
            if not first.allow:
                raise Denied(f"engine denied: {first.reason.value}")
            started = time.perf_counter()
            for fact in facts[1:]:
                decision = engine.verify(fact)
                if not decision.allow:
                    raise Denied(f"engine denied: {decision.reason.value}")
            return time.perf_counter() - started

        # On a worker thread, as the service runs it.
        elapsed = await asyncio.to_thread(drive)
        return n / elapsed, "Verifier.verify on a worker thread"
    finally:
        await app.close()


def end_to_end(bench: Bench, redis: RedisServer | None, servers: dict[str, PinnedServer]) -> None:
    """The throughput curve: null, then every (store, alg) at each concurrency. The servers
    stay in ``servers`` (the caller stops them) for the later sections."""
    args = bench.args
    if not args.skip_null:
        servers["null"] = bench.null_server()
    for store in args.stores:
        env = {"DPOP_REPLAY_URL": redis.url} if store == "redis" and redis else {}
        servers[store] = bench.service(store, env)
    for concurrency in args.concurrency:
        for method in args.methods:
            null: float | None = None
            if "null" in servers:
                base = bench.row(
                    "null", servers["null"], method, "ES256", "-", concurrency, itself("null")
                )
                null = base.per_second
            for store in args.stores:
                for alg in args.algs:
                    bench.row(
                        "service",
                        servers[store],
                        method,
                        alg,
                        store,
                        concurrency,
                        ratio(null, "null"),
                    )


Measured = tuple[Run, CpuUse]


def alternating(
    bench: Bench, servers: Mapping[str, PinnedServer], concurrency: int
) -> tuple[dict[str, list[Measured]], dict[str, Measured]]:
    """ES256 ``Check`` on every server in turn, ``--rounds`` times: every round of each, and
    the best (fastest) of each. On a shared machine a neighbour's burst only ever slows a
    round, so the best of alternating rounds is the fairest estimate of each one's cost."""
    rounds: dict[str, list[Measured]] = {key: [] for key in servers}
    for _ in range(bench.args.rounds):
        for key, server in servers.items():
            rounds[key].append(bench.closed(server, CHECK, TARGET_ALG, concurrency))
    kept = {key: max(runs, key=lambda r: r[0].per_second) for key, runs in rounds.items()}
    return rounds, kept


def check_row(kind: str, store: str, concurrency: int, measured: Measured, ratio: str) -> Row:
    """A row of ES256 ``Check`` calls, every one allowed (or the run would have aborted)."""
    run, cpu = measured
    allowed = f"{len(run.answers)}/{len(run.answers)}"
    return Row(kind, "Check", TARGET_ALG, store, str(concurrency), run.per_second, ratio, run,
               allowed, cpu)  # fmt: skip


def every_round(rounds: Mapping[str, list[Measured]]) -> str:
    return "; ".join(
        f"{name} " + ", ".join(f"{run.per_second:,.0f}" for run, _ in runs)
        for name, runs in rounds.items()
    )


def target_rounds(bench: Bench, servers: dict[str, PinnedServer]) -> None:
    """The targets' throughput ratios again, as alternating rounds (:func:`alternating`): null
    server, floor, memory store, Redis store, at the concurrency where ES256 ``Check`` on Redis
    peaked. With single rows, a neighbour's burst during one row would decide a ratio."""
    store = TARGET_STORE if TARGET_STORE in servers else bench.args.stores[0]
    best = peak(
        find(bench.report.rows, kind="service", method="Check", alg=TARGET_ALG, store=store)
    )
    if best is None:
        return
    concurrency = int(best.concurrency)
    if "null" in servers:
        servers["floor"] = bench.null_server("--signature-only", name="floor")
    names = [name for name in ("null", "floor", *STORES) if name in servers]
    rounds, kept = alternating(bench, {name: servers[name] for name in names}, concurrency)
    null = kept["null"][0].per_second if "null" in kept else None
    for name, measured in kept.items():
        kind = f"rounds {name}" if name in ("null", "floor") else "rounds service"
        store = "-" if name in ("null", "floor") else name
        bench.report.add(
            check_row(
                kind, store, concurrency, measured, ratio(null, "null")(measured[0].per_second)
            )
        )
    spread = every_round(rounds)
    bench.report.notes.append(
        f"rounds: Check {TARGET_ALG} at c={concurrency}, best of {bench.args.rounds} alternating "
        f"rounds (every round, req/s: {spread})"
    )


SERVER_STACKS = ("threads", "aio", "uvloop")


def stacks(bench: Bench) -> None:
    """The null server and the floor on every server stack (``null_server.py --stack``), as
    alternating rounds (best of ``--rounds``), at the targets' concurrency; ratios to the
    thread-pool null server. The servers run only for this section."""
    targets = find(bench.report.rows, kind="rounds null")
    concurrency = int(targets[0].concurrency) if targets else bench.args.concurrency[-1]
    servers: dict[str, PinnedServer] = {}
    with stopping(servers):
        for stack in SERVER_STACKS:
            for kind in ("null", "floor"):
                options = ["--stack", stack, *(["--signature-only"] if kind == "floor" else [])]
                servers[f"{kind} on {stack}"] = bench.null_server(*options, name=f"{kind}-{stack}")
        rounds, kept = alternating(bench, servers, concurrency)
    base = kept["null on threads"][0].per_second
    for name, measured in kept.items():
        rate = measured[0].per_second
        bench.report.add(
            check_row(name, "-", concurrency, measured, ratio(base, "threads null")(rate))
        )
    spread = every_round(rounds)
    bench.report.notes.append(
        f"stacks: Check {TARGET_ALG} at c={concurrency}; threads = the service's thread-pool "
        f"grpc.server, aio = grpc.aio.server on asyncio, uvloop = the same on uvloop; best of "
        f"{bench.args.rounds} alternating rounds (every round, req/s: {spread})"
    )


def forward_auth(bench: Bench) -> None:
    """Allowed forward-auth requests (what Traefik sends, keep-alive connections) against
    allowed ES256 ``Check`` calls, on one service process with the memory store (only the front
    door differs): alternating rounds at the targets' concurrency, best of ``--rounds``; then
    each at concurrency 1 for its latency."""
    targets = find(bench.report.rows, kind="rounds service") or find(
        bench.report.rows, kind="service", method="Check", alg=TARGET_ALG
    )
    concurrency = int(targets[0].concurrency) if targets else bench.args.concurrency[-1]
    server = bench.service("forward-auth", {"DPOP_HTTP_LISTEN": "127.0.0.1:0"})
    announced = [line for line in server.preamble if line.startswith(FORWARD_AUTH_ANNOUNCEMENT)]
    checks: list[Measured] = []
    https: list[Measured] = []
    try:
        if not announced:
            raise Denied("the service did not announce its forward-auth listener")
        address = announced[0].split()[-1]
        for _ in range(bench.args.rounds):
            checks.append(bench.closed(server, CHECK, TARGET_ALG, concurrency))
            https.append(bench.http_closed(server, address, concurrency))
        single_check = bench.closed(server, CHECK, TARGET_ALG, 1)
        single_http = bench.http_closed(server, address, 1)
    finally:
        server.stop()
    best_check = max(checks, key=lambda r: r[0].per_second)
    best_http = max(https, key=lambda r: r[0].per_second)
    base = best_check[0].per_second
    bench.report.add(check_row("forward-auth: Check", "memory", concurrency, best_check, ""))
    for kind, c, (run, cpu) in (
        ("forward-auth: HTTP", concurrency, best_http),
        ("forward-auth: Check", 1, single_check),
        ("forward-auth: HTTP", 1, single_http),
    ):
        allowed = f"{len(run.answers)}/{len(run.answers)}"
        shown = ratio(base, "Check")(run.per_second) if c == concurrency else ""
        bench.report.add(
            Row(
                kind,
                "HTTP" if "HTTP" in kind else "Check",
                TARGET_ALG,
                "memory",
                str(c),
                run.per_second,
                shown,
                run,
                allowed,
                cpu,
            )
        )
    bench.report.notes.append(
        f"forward-auth: one service, memory store; HTTP/1.1 keep-alive, one connection per "
        f"caller, Traefik's headers; at c={concurrency} best of {bench.args.rounds} alternating "
        f"rounds (every round, req/s: {every_round({'Check': checks, 'HTTP': https})})"
    )


STALLED_CALLS, STALLED_CONNECTIONS = 3000, 60


def stalled(bench: Bench, redis: RedisServer | None) -> None:
    """Allowed ES256 ``Check``s with :data:`STALLED_CALLS` calls that never send their request
    message (over :data:`STALLED_CONNECTIONS` connections) held open against the service,
    as a ratio to the same service without them: alternating rounds, best of ``--rounds``.
    Each round also times a health check made while the calls are held, and checks that every
    stalled call was still open at the end (so it weighed on the whole measured batch)."""
    targets = find(bench.report.rows, kind="rounds service") or find(
        bench.report.rows, kind="service", method="Check", alg=TARGET_ALG
    )
    concurrency = int(targets[0].concurrency) if targets else bench.args.concurrency[-1]
    store = "redis" if redis else "memory"
    env = {"DPOP_RECEIVE_TIMEOUT_MS": "600000"}  # held for the whole round
    if redis:
        env["DPOP_REPLAY_URL"] = redis.url
    server = bench.service("stalled", env)
    calm: list[Measured] = []
    held: list[Measured] = []
    health_ms: list[float] = []
    try:
        for _ in range(bench.args.rounds):
            calm.append(bench.closed(server, CHECK, TARGET_ALG, concurrency))
            calls = StalledCalls(server.address, STALLED_CALLS, STALLED_CONNECTIONS)
            bench.runner.run(calls.__aenter__())
            try:
                health_ms.append(bench.runner.run(health_check_ms(server.address)))
                held.append(bench.closed(server, CHECK, TARGET_ALG, concurrency))
                still_open = calls.pending()
            finally:
                bench.runner.run(calls.close())
            if still_open != STALLED_CALLS:
                raise Denied(f"stalled callers: only {still_open} of {STALLED_CALLS} stayed open")
    finally:
        server.stop()
    best_calm = max(calm, key=lambda r: r[0].per_second)
    best_held = max(held, key=lambda r: r[0].per_second)
    base = best_calm[0].per_second
    bench.report.add(check_row("no stalled calls", store, concurrency, best_calm, ""))
    bench.report.add(
        check_row(
            "stalled callers",
            store,
            concurrency,
            best_held,
            ratio(base, "unstalled")(best_held[0].per_second),
        )
    )
    bench.report.stalled_health_ms = max(health_ms)
    bench.report.notes.append(
        f"stalled callers: {STALLED_CALLS:,} calls that never send their message over "
        f"{STALLED_CONNECTIONS} connections, held through each round; Check {TARGET_ALG} at "
        f"c={concurrency}, best of {bench.args.rounds} alternating rounds (every round, req/s: "
        + every_round({"without": calm, "with": held})
        + "); health answered in "
        + ", ".join(f"{ms:.0f}" for ms in health_ms)
        + " ms while they were held"
    )


async def health_check_ms(address: str) -> float:
    """How long one grpc.health.v1 Check takes (a new connection, as a kubelet probe makes)."""
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(address) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    return (time.perf_counter() - started) * 1000


def stand_ins(bench: Bench, redis: RedisServer | None) -> None:
    """Each piece of our own code that stands in for a library, against that library, in
    process (``bench/bench_standins.py``, and ``bench/bench_replay_cpu.py`` for the replay
    client against a real redis-server): CPU per operation, best of ``--rounds``."""
    n = 20_000  # even --quick: a few seconds, and enough CPU time to measure (os.times ticks)
    pairs = bench_standins.measure_all(n, bench.args.rounds)
    if redis is not None:
        cpu = bench_replay_cpu.client_cpu_per_write(redis.url, n // 4)
        pairs.append(
            bench_standins.Pair(
                "replay client (SET NX PX, lean RESP vs redis-py+hiredis)",
                cpu["lean"],
                cpu["redis-py+hiredis"],
            )
        )
    for pair in pairs:
        bench.report.add(
            Row(
                f"ours: {pair.name.split(' (')[0]}",
                per_second=1e6 / pair.ours_us if pair.ours_us > 0 else 0.0,
                ratio=f"{pair.saving:.2f}x lib",
            )
        )
    bench.report.notes.append(
        "stand-ins (CPU µs per operation, ours vs the library's, best of "
        f"{bench.args.rounds}): "
        + "; ".join(f"{pair.name}: {pair.ours_us:.2f} vs {pair.library_us:.2f}" for pair in pairs)
    )


def paced(bench: Bench, servers: dict[str, PinnedServer]) -> None:
    """Open loop at half of the peak, ``--rounds`` times; the row is the round with the median
    p99 (the others are in a note)."""
    store = TARGET_STORE if TARGET_STORE in servers else bench.args.stores[0]
    best = peak(
        find(bench.report.rows, kind="rounds service", store=store)
        or find(bench.report.rows, kind="service", method="Check", alg=TARGET_ALG, store=store)
    )
    if best is None:
        return
    rate = best.per_second / 2
    n = max(100, int(rate * bench.args.paced_seconds))
    server = servers[store]
    runs: list[tuple[Run, CpuUse]] = []
    for _ in range(bench.args.rounds):
        requests = bench.requests(CHECK, TARGET_ALG, n)
        with cpu_use(server) as cpu:
            run = bench.runner.run(open_loop(server.address, CHECK, requests, rate))
        try:
            count_allowed(CHECK, run.answers)
        except Denied as exc:
            raise Denied(f"{exc} (paced at {rate:,.0f}/s, {store})") from None
        runs.append((run, cpu))
    runs.sort(key=lambda r: r[0].percentile_ms(0.99))
    run, cpu = runs[len(runs) // 2]
    bench.report.notes.append(
        f"paced 50%: {len(runs)} run(s) at {rate:,.0f}/s, the median p99 shown (every p99, ms: "
        + ", ".join(f"{r.percentile_ms(0.99):.2f}" for r, _ in runs)
        + ")"
    )
    bench.report.add(
        Row(
            "paced 50%",
            "Check",
            TARGET_ALG,
            store,
            "open",
            run.per_second,
            f"{run.per_second / best.per_second:.2f} peak",
            run,
            f"{n}/{n}",
            cpu,
        )
    )


def tracing(bench: Bench, servers: dict[str, PinnedServer], redis: RedisServer | None) -> None:
    """Tracing off, on (traces exported, metrics not) and on with metrics, alternating."""
    store = TARGET_STORE if TARGET_STORE in servers else bench.args.stores[0]
    best = peak(
        find(bench.report.rows, kind="service", method="Check", alg=TARGET_ALG, store=store)
    )
    concurrency = int(best.concurrency) if best else bench.args.concurrency[-1]
    sink = PinnedServer(
        [sys.executable, str(ROOT / "bench" / "_otlp_sink.py")],
        [bench.args.generator_core],
        clean_env({}),
        bench.workdir / "otlp-sink.log",
        announce="otlp sink listening on",
    )
    n = bench.args.n
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.address,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_MAX_QUEUE_SIZE": str(max(16 * n, 2048)),  # no span dropped at this rate
    }
    if store == "redis" and redis is not None:
        env["DPOP_REPLAY_URL"] = redis.url
    configs = {
        "tracing off": servers[store],
        "tracing on": bench.service("traced", {**env, "OTEL_METRICS_EXPORTER": "none"}),
        "tracing+metrics": bench.service("traced-metrics", env),
    }
    try:
        _, kept = alternating(bench, configs, concurrency)
    finally:
        configs["tracing on"].stop()
        configs["tracing+metrics"].stop()
        spans = sink.stop().strip()
    off = kept["tracing off"][0].per_second
    for name, measured in kept.items():
        rate = measured[0].per_second
        bench.report.add(check_row(name, store, concurrency, measured, f"{rate / off:.2f} off"))
    bench.report.notes.append(
        f"tracing on: OTEL_TRACES_SAMPLER=always_on, spans over OTLP/gRPC to a local sink on core "
        f"{bench.args.generator_core}, OTEL_METRICS_EXPORTER=none; tracing+metrics: the same with "
        f"the metrics exported too; best of {bench.args.rounds} alternating rounds; sink: "
        f"{spans or 'no count'}"
    )


def workers(bench: Bench, servers: dict[str, PinnedServer]) -> None:
    """Memory store (the comparison is CPU, not Redis), the highest concurrency."""
    if "memory" not in servers:
        bench.report.notes.append("workers row skipped: it needs the memory store")
        return
    store, concurrency = "memory", bench.args.concurrency[-1]
    all_cores = sorted(set(bench.args.available_cores) | set(bench.args.service_cores))
    port = free_port()  # several processes share it (SO_REUSEPORT), so not port 0
    env = {"DPOP_WORKERS": str(bench.args.workers), "DPOP_LISTEN": f"127.0.0.1:{port}"}
    connections = 4 * bench.args.workers  # the kernel spreads connections, not calls
    single = servers[store]
    single.connections = connections  # the baseline over as many connections: same client
    try:
        one, _ = bench.closed(single, CHECK, TARGET_ALG, concurrency)
    finally:
        single.connections = 1
    many_server = bench.service("workers", env, cores=all_cores)
    many_server.connections = connections
    try:
        bench.row(
            f"workers={bench.args.workers}",
            many_server,
            "Check",
            TARGET_ALG,
            store,
            concurrency,
            ratio(one.per_second, "1 worker"),
        )
    finally:
        many_server.stop()
    bench.report.notes.append(
        f"workers={bench.args.workers}: DPOP_WORKERS={bench.args.workers} on cores "
        f"{cores_text(all_cores)} (the generator shares core {bench.args.generator_core}), "
        f"{connections} connections; ratio to one worker on core(s) "
        f"{cores_text(bench.args.service_cores)} measured just before over as many "
        f"connections ({one.per_second:,.0f}/s)"
    )


def flood(bench: Bench) -> None:
    """Unique proofs through a capped memory store: RSS stays bounded, and past the cap the
    store refuses new proofs (fails closed: ``replay_store_unavailable``) until keys expire."""
    total, cap = bench.args.flood, bench.args.flood_cap
    server = bench.service(
        "flood", {"DPOP_MEMORY_REPLAY_MAX_ENTRIES": str(cap)}, memory_replay_max_entries=cap
    )
    concurrency, chunk, warm = 32, 10_000, min(200, cap // 2)
    counts: Counter[str] = Counter()

    def send(size: int) -> None:
        requests = bench.requests(CHECK, TARGET_ALG, size)
        run = bench.runner.run(closed_loop(server.address, CHECK, requests, concurrency))
        counts.update(outcomes(CHECK, run.answers))

    try:
        send(warm)
        before = server.rss_bytes()
        send(cap - warm)
        at_cap = server.rss_bytes()
        for start in range(cap, total, chunk):
            send(min(chunk, total - start))
        after = server.rss_bytes()
    finally:
        server.stop()
    unexpected = set(counts) - {"allow", "replay_store_unavailable"}
    # Past the cap, a proof is admitted only as an older key's window ends (a long flood).
    if unexpected or counts["allow"] < cap:
        raise Denied(f"flood: unexpected outcomes {dict(counts)} (cap {cap})")
    mib = 1024 * 1024
    bench.report.flood = [
        f"memory store, DPOP_MEMORY_REPLAY_MAX_ENTRIES={cap:,}; {total:,} unique proofs "
        f"(Check, {TARGET_ALG}, concurrency {concurrency}): {counts['allow']:,} allowed "
        f"({counts['allow'] - cap:,} past the cap, as older keys expired), "
        f"{counts['replay_store_unavailable']:,} refused as replay_store_unavailable "
        "(full of live keys: fails closed, never evicts one)",
        f"service RSS: {before / mib:,.1f} MiB after warm-up, {at_cap / mib:,.1f} MiB at the cap, "
        f"{after / mib:,.1f} MiB after all {total:,} ({total / cap:.1f}x the cap)",
        f"about {(at_cap - before) / (cap - warm):,.0f} bytes of RSS per entry up to the "
        f"cap (allocator overhead included); {(after - at_cap) / mib:+,.1f} MiB past it",
    ]


def targets(bench: Bench) -> None:
    rows, out = bench.report.rows, bench.report.targets
    missing = "not measured"

    # Values are shown with one digit more than the targets state, so a figure does not round
    # onto the other side of its line (a 15.5 % cost printed as "15 %" beside FAIL).
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    checks = find(rows, kind="service", method="Check", alg=TARGET_ALG, store=TARGET_STORE)
    # The alternating rounds, when they ran, decide the throughput ratios (see target_rounds).
    rounds = find(rows, kind="rounds service", store=TARGET_STORE)
    best = rounds[0] if rounds else peak(checks)
    null_kind = "rounds null" if rounds else "null"
    memory_kind = "rounds service" if rounds else "service"
    if best is not None:
        null = find(rows, kind=null_kind, method="Check", concurrency=best.concurrency)
        if null:
            ratio = best.per_second / null[0].per_second
            out.append(
                (
                    "Check/s >= 0.35x null server (same concurrency)",
                    f"{ratio:.3f} ({best.per_second:,.0f} vs {null[0].per_second:,.0f}/s "
                    f"at c={best.concurrency})",
                    verdict(ratio >= 0.35),
                )
            )
        else:
            out.append(("Check/s >= 0.35x null server (same concurrency)", missing, "-"))
        floor = find(rows, kind="rounds floor", concurrency=best.concurrency)
        if null and floor:  # not a target: what the stack allows any verifier (see rounds)
            bound = floor[0].per_second / null[0].per_second
            out.append(
                (
                    "  bound: signature-only floor server",
                    f"{bound:.2f} ({floor[0].per_second:,.0f}/s); the service is "
                    f"{best.per_second / floor[0].per_second:.2f}x the floor",
                    "info",
                )
            )
        out.append(
            (
                "Check/s >= 3,000 on one core",
                f"{best.per_second:,.0f}/s (c={best.concurrency})",
                verdict(best.per_second >= 3000),
            )
        )
    else:
        out.append(("Check/s (ES256, Redis)", missing, "-"))
    calm, held = find(rows, kind="no stalled calls"), find(rows, kind="stalled callers")
    label = f"with {STALLED_CALLS:,} stalled calls >= 0.8x without"
    if calm and held:
        kept = held[0].per_second / calm[0].per_second
        out.append(
            (
                label,
                f"{kept:.3f} ({held[0].per_second:,.0f} vs {calm[0].per_second:,.0f}/s)",
                verdict(kept >= 0.8),
            )
        )
        health_ms = bench.report.stalled_health_ms or 0.0
        out.append(
            (
                "  health answers within 1 s meanwhile",
                f"{health_ms:,.0f} ms (slowest round)",
                verdict(health_ms <= 1000),
            )
        )
    else:
        out.append((label, missing, "-"))
    single = find(checks, concurrency="1")
    if single and single[0].run:
        p50 = single[0].run.percentile_ms(0.5)
        out.append(("p50 <= 1 ms at concurrency 1", f"{p50:.3f} ms", verdict(p50 <= 1.0)))
    else:
        out.append(("p50 <= 1 ms at concurrency 1", missing, "-"))
    paced_rows = find(rows, kind="paced 50%")
    if paced_rows and paced_rows[0].run:
        row = paced_rows[0]
        assert row.run is not None
        p99 = row.run.percentile_ms(0.99)
        out.append(
            (
                "p99 <= 5 ms at half of peak (open loop)",
                f"{p99:.3f} ms at {row.per_second:,.0f}/s ({row.store})",
                verdict(p99 <= 5.0),
            )
        )
    else:
        out.append(("p99 <= 5 ms at half of peak (open loop)", missing, "-"))
    memory = peak(find(rows, kind=memory_kind, method="Check", alg=TARGET_ALG, store="memory"))
    if best is not None and memory is not None:
        same = find(
            rows,
            kind=memory_kind,
            method="Check",
            alg=TARGET_ALG,
            store="memory",
            concurrency=best.concurrency,
        )
        ratio = best.per_second / same[0].per_second
        out.append(
            (
                "Redis store >= 0.9x memory store",
                f"{ratio:.3f} at c={best.concurrency} (peaks {best.per_second:,.0f} vs "
                f"{memory.per_second:,.0f}/s)",
                verdict(ratio >= 0.9),
            )
        )
    else:
        out.append(("Redis store >= 0.9x memory store", missing, "-"))
    grpc_rows = find(rows, kind="forward-auth: Check")
    http_rows = find(rows, kind="forward-auth: HTTP")
    label = "forward-auth/s >= 0.8x Check/s (same service)"
    if grpc_rows and http_rows:
        share = http_rows[0].per_second / grpc_rows[0].per_second
        out.append(
            (
                label,
                f"{share:.3f} ({http_rows[0].per_second:,.0f} vs {grpc_rows[0].per_second:,.0f}/s "
                f"at c={http_rows[0].concurrency})",
                verdict(share >= 0.8),
            )
        )
        for grpc_row, http_row in zip(grpc_rows[1:], http_rows[1:], strict=False):
            if grpc_row.run and http_row.run:
                out.append(
                    (
                        "  p50 at concurrency 1: forward-auth vs Check",
                        f"{http_row.run.percentile_ms(0.5):.3f} vs "
                        f"{grpc_row.run.percentile_ms(0.5):.3f} ms",
                        "info",
                    )
                )
    else:
        out.append((label, missing, "-"))
    on = find(rows, kind="tracing on")
    off = find(rows, kind="tracing off")
    if on and off:
        cost = 1 - on[0].per_second / off[0].per_second
        out.append(
            (
                "tracing on (100 %) costs <= 15 % of throughput",
                f"{cost * 100:.1f} % ({on[0].per_second:,.0f} vs {off[0].per_second:,.0f}/s)",
                verdict(cost <= 0.15),
            )
        )
    else:
        out.append(("tracing on (100 %) costs <= 15 % of throughput", missing, "-"))


# -- output ------------------------------------------------------------------------------------


def machine_line() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    redis_version = redis.stdout.split()[2] if redis.returncode == 0 else "?"
    now = datetime.datetime.now(datetime.UTC)
    uvloop_version = getattr(uvloop, "__version__", "?")
    return (
        f"machine: {model}, {os.cpu_count()} cores, load average at start "
        f"{os.getloadavg()[0]:.2f}; Python {platform.python_version()}, grpcio {grpc.__version__}, "
        f"uvloop {uvloop_version}, cryptography {cryptography.__version__}, redis-server "
        f"{redis_version.removeprefix('v=')}; {now:%Y-%m-%d %H:%M} UTC"
    )


def print_report(bench: Bench, machine: str, command: str) -> None:
    args, report = bench.args, bench.report
    print(f"\n$ {command}")
    print(
        f"service: python -m verifier serve pinned with taskset -c {cores_text(args.service_cores)}"
        f"; load generator (this process, grpc.aio + uvloop, raw-bytes calls, one channel) "
        f"pinned to core {args.generator_core}; redis-server and the OTLP sink on core "
        f"{args.generator_core}"
    )
    print(
        f"n={args.n} fresh proofs per row (after a warm-up), one JWT access token (ES256, from "
        f"TestIssuer) per client key; null server stack: {getattr(bench, 'null_stack', '-')}"
    )
    print(
        "columns: ratio = req/s over the row named after it; svc cpu = CPU of the service, "
        "others = CPU of anything else on the service's core(s) (other processes, interrupts, "
        "loopback networking), gen cpu = CPU of the load generator, all in cores"
    )
    table = [HEADER, *(row.cells() for row in report.rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    for line in table:
        print(
            "  ".join(
                cell.ljust(w) if i < 5 or i == 10 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
    for note in report.notes:
        print(f"* {note}")
    if report.flood:
        print("\nmemory under a flood")
        for text in report.flood:
            print(f"  {text}")
    if report.targets:
        print(
            f"\ntargets (issues 9, 15; {TARGET_ALG} proof, JWT token, {TARGET_STORE} store, "
            f"service on core(s) {cores_text(args.service_cores)})"
        )
        width = max(len(t[0]) for t in report.targets)
        value_width = max(len(t[1]) for t in report.targets)
        for name, value, result in report.targets:
            print(f"  {name:<{width}}  {value:<{value_width}}  {result}")
    print(f"\n{machine}")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run, every row kind (CI)")
    parser.add_argument("--n", type=int, help="requests per measured row (default 2000)")
    parser.add_argument("--concurrency", help="comma-separated (default 1,8,32,64)")
    parser.add_argument("--algs", help=f"comma-separated proof algs (default {','.join(ALGS)})")
    parser.add_argument("--stores", help="comma-separated: memory,redis (default both)")
    parser.add_argument("--methods", default="Check,Verify", help="comma-separated")
    parser.add_argument("--service-cores", default="0", help="cores of the service (taskset)")
    parser.add_argument("--generator-core", type=int, help="default: a core the service lacks")
    parser.add_argument(
        "--rounds",
        type=int,
        help="alternating rounds of the target, stacks and tracing rows, and open-loop runs "
        "(default 3)",
    )
    parser.add_argument("--paced-seconds", type=float, help="open-loop run length (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="DPOP_WORKERS of the workers row")
    parser.add_argument("--flood", type=int, help="unique proofs of the flood (default 100000)")
    parser.add_argument("--flood-cap", type=int, help="its memory store cap (default 40000)")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every service (and the null server); repeatable",
    )
    parts: tuple[str, ...] = (
        "null",
        "rounds",
        "stacks",
        "stalled",
        "stand-ins",
        "paced",
        "tracing",
        "workers",
    )
    parts += ("flood", "forward-auth")
    for part in (*parts, "in-process"):
        parser.add_argument(f"--skip-{part}", action="store_true")
    args = parser.parse_args(argv)

    quick = args.quick
    args.n = args.n or (150 if quick else 2000)
    args.n_in_process = 200 if quick else 2000
    args.concurrency = _ints(args.concurrency or ("8" if quick else "1,8,32,64"))
    args.algs = _names(args.algs or ("ES256" if quick else ",".join(ALGS)), ALGS, "--algs")
    args.stores = _names(args.stores or ",".join(STORES), STORES, "--stores")
    args.methods = _names(args.methods, tuple(METHODS), "--methods")
    args.rounds = args.rounds or (1 if quick else 3)
    args.paced_seconds = args.paced_seconds or (0.5 if quick else 3.0)
    args.flood = args.flood or (2000 if quick else 100_000)
    args.flood_cap = args.flood_cap or (500 if quick else 40_000)
    if args.flood < args.flood_cap:
        parser.error("--flood must be at least --flood-cap")
    args.service_cores = _ints(args.service_cores)
    available = sorted(os.sched_getaffinity(0))  # before main() pins this process to one
    args.available_cores = available
    if args.generator_core is None:
        free = [c for c in available if c not in args.service_cores]
        args.generator_core = free[0] if free else available[0]
    try:
        args.service_env = dict(item.split("=", 1) for item in args.service_env or [])
    except ValueError:
        parser.error("--service-env takes NAME=VALUE")
    return args


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _names(text: str, allowed: Sequence[str], option: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in allowed:
            raise SystemExit(f"{option}: {name!r} is not one of {', '.join(allowed)}")
    return names


@contextlib.contextmanager
def stopping(servers: Mapping[str, PinnedServer]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers.values():
            server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_line()
    # This process is the load generator; Redis and the OTLP sink, started from it, inherit.
    os.sched_setaffinity(0, {args.generator_core})
    command = "bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="dpop-bench-") as tmp,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
        contextlib.ExitStack() as stack,
    ):
        bench = Bench(args, Path(tmp), runner)
        try:
            if not args.skip_in_process:
                print("in process ...", file=sys.stderr, flush=True)
                in_process(bench)
            redis = stack.enter_context(RedisServer()) if "redis" in args.stores else None
            servers: dict[str, PinnedServer] = {}
            stack.enter_context(stopping(servers))
            print("end to end ...", file=sys.stderr, flush=True)
            end_to_end(bench, redis, servers)
            if not args.skip_rounds:
                target_rounds(bench, servers)
            if not args.skip_stacks:
                stacks(bench)
            if not args.skip_forward_auth:
                print("forward-auth ...", file=sys.stderr, flush=True)
                forward_auth(bench)
            if not args.skip_stalled:
                print("stalled callers ...", file=sys.stderr, flush=True)
                stalled(bench, redis)
            if not args.skip_stand_ins:
                print("stand-ins ...", file=sys.stderr, flush=True)
                stand_ins(bench, redis)
            if not args.skip_paced:
                paced(bench, servers)
            if not args.skip_tracing:
                tracing(bench, servers, redis)
            if not args.skip_workers and args.workers > 1:
                workers(bench, servers)
            if not args.skip_flood:
                print("flood ...", file=sys.stderr, flush=True)
                flood(bench)
        except Denied as exc:
            print(f"\nABORTED: a request was denied: {exc}", file=sys.stderr)
            for log in sorted(Path(tmp).glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()
                shown = [line for line in lines if '"decision":"deny"' in line][:3]
                shown += [line for line in lines if "ERROR" in line or "WARNING" in line][:5]
                if shown:
                    print(f"--- {log.name}\n" + "\n".join(shown), file=sys.stderr)
            return 1
        targets(bench)
        bench.report.notes.append(f"wall time of the run: {time.monotonic() - started:.0f} s")
        print_report(bench, machine, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
