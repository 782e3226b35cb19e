"""Core benchmark: proofs verified per second, as ratios measured in one run.

    .venv/bin/python bench/bench_core.py [--alg ES256] [--n 3000] [--concurrency 16] [--no-redis]

Prints, for one algorithm:
  * the raw signature-verification rate of ``cryptography`` (key object cached),
  * the pure proof check (verifier.dpop functions, in process),
  * the full engine in process (proof + token + in-memory replay),
  * ``Verify`` over gRPC on loopback against a real ``dpop-verifier serve`` process, with the
    in-memory store and (unless --no-redis) a real ``redis-server``.
Each figure is also given as a ratio to the raw verify rate. The load generator runs in this
process on the same machine; its CPU time is printed so the reader can judge it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from tests.support.redis_server import RedisServer
from tests.support.service import ServiceProcess, TestIssuer
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc as pb_grpc
from verifier.cli.mint import generate_key, make_proof
from verifier.domain.model import RequestFacts
from verifier.dpop import proof as proofs
from verifier.engine.pipeline import EngineSettings, Verifier
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS, verify_signature
from verifier.jose.rfc7517 import public_key_for_alg
from verifier.jose.rfc7638 import thumbprint
from verifier.replay.memory import MemoryReplayStore
from verifier.tokens.sources import StaticKeySource
from verifier.tokens.validator import TokenValidator, TrustedIssuer

URL = "https://api.test/orders"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_raw_verify(alg: str, n: int) -> float:
    client = generate_key(alg)
    proof = make_proof(client, "GET", URL)
    jws = proofs.parse_proof(proof)
    key = public_key_for_alg(client.public_jwk, alg)
    started = time.perf_counter()
    for _ in range(n):
        verify_signature(alg, key, jws.signing_input, jws.signature)
    return rate(n, time.perf_counter() - started)


def bench_pure_proof_check(alg: str, n: int) -> float:
    """The pure checks of one proof, as the engine runs them (key import included, uncached)."""
    client = generate_key(alg)
    token = "x" * 600
    items = [make_proof(client, "GET", URL, access_token=token) for _ in range(n)]
    limits, algs = proofs.ProofLimits(), frozenset(DEFAULT_PROOF_ALGS)
    now = time.time()
    started = time.perf_counter()
    for text in items:
        jws = proofs.parse_proof(proofs.select_single_proof((text,), limits.max_proof_bytes))
        header = proofs.check_header(jws.header, algs)
        key = public_key_for_alg(header.jwk, header.alg)
        thumbprint(header.jwk)
        assert verify_signature(header.alg, key, jws.signing_input, jws.signature)
        claims = proofs.check_claims(
            jws.payload, method="GET", target_uri=URL, now=now, limits=limits
        )
        proofs.check_ath(claims, token)
    return rate(n, time.perf_counter() - started)


def bench_engine(alg: str, issuer: TestIssuer, n: int) -> float:
    client = generate_key(alg)
    source = StaticKeySource.from_file(issuer.jwks_file)
    tokens = TokenValidator([TrustedIssuer("https://issuer.test", source, "https://api.test")])
    engine = Verifier(EngineSettings(), tokens=tokens, replay=MemoryReplayStore())
    token = issuer.token(client)
    facts = [
        RequestFacts(
            "GET", URL, (f"DPoP {token}",), (make_proof(client, "GET", URL, access_token=token),)
        )
        for _ in range(n)
    ]
    started = time.perf_counter()
    for fact in facts:
        decision = engine.verify(fact)
        assert decision.allow, decision
    return rate(n, time.perf_counter() - started)


async def drive_grpc(
    address: str, requests: list[pb.VerifyRequest], concurrency: int
) -> tuple[float, list[float], float]:
    """Send ``requests`` with ``concurrency`` callers; return (rate, latencies, client CPU s)."""
    latencies: list[float] = []
    queue = list(reversed(requests))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.VerifierServiceStub(channel)
        await stub.Verify(pb.VerifyRequest(method="GET", target_uri=URL))  # warm the channel

        async def worker() -> None:
            while queue:
                request = queue.pop()
                t0 = time.perf_counter()
                response = await stub.Verify(request)
                latencies.append(time.perf_counter() - t0)
                if response.decision != pb.DECISION_ALLOW:
                    raise SystemExit(f"unexpected denial: {response.reason_code}")

        cpu0, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return rate(len(requests), elapsed), latencies, cpu


def grpc_requests(alg: str, issuer: TestIssuer, n: int) -> list[pb.VerifyRequest]:
    client = generate_key(alg)
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


def bench_grpc(
    alg: str, issuer: TestIssuer, workdir: Path, n: int, concurrency: int, env: dict[str, str]
) -> tuple[float, float, float, float]:
    config = workdir / f"config-{len(env)}.json"
    config.write_text(json.dumps(issuer.config()), encoding="utf-8")
    service = ServiceProcess(config, env)
    try:
        requests = grpc_requests(alg, issuer, n)
        per_sec, latencies, cpu = asyncio.run(drive_grpc(service.address, requests, concurrency))
    finally:
        service.stop()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    return per_sec, p50, p99, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alg", default="ES256", choices=DEFAULT_PROOF_ALGS)
    parser.add_argument("--n", type=int, default=3000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        issuer = TestIssuer(workdir)
        raw = bench_raw_verify(args.alg, args.n)
        rows = [("raw cryptography verify (cached key)", raw, "", "")]
        rows.append(
            ("pure proof check (in process)", bench_pure_proof_check(args.alg, args.n), "", "")
        )
        rows.append(
            (
                "engine: proof+token+memory replay",
                bench_engine(args.alg, issuer, args.n),
                "",
                "",
            )
        )
        per_sec, p50, p99, cpu = bench_grpc(args.alg, issuer, workdir, args.n, args.concurrency, {})
        rows.append(("Verify over gRPC, memory store", per_sec, f"{p50:.2f}", f"{p99:.2f}"))
        client_cpu = [cpu]
        if not args.no_redis:
            with RedisServer() as redis:
                per_sec, p50, p99, cpu = bench_grpc(
                    args.alg,
                    issuer,
                    workdir,
                    args.n,
                    args.concurrency,
                    {"DPOP_REPLAY_URL": redis.url},
                )
            rows.append(("Verify over gRPC, Redis store", per_sec, f"{p50:.2f}", f"{p99:.2f}"))
            client_cpu.append(cpu)

    print(
        f"\nalg={args.alg} n={args.n} concurrency={args.concurrency} cores={os.cpu_count()} "
        f"python={sys.version.split()[0]}"
    )
    print(f"{'measurement':<40} {'per second':>12} {'x raw':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for name, value, p50s, p99s in rows:
        print(f"{name:<40} {value:>12,.0f} {value / raw:>7.3f} {p50s:>8} {p99s:>8}")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu_text = ", ".join(f"{c:.2f}s" for c in client_cpu)
    print(f"load generator CPU per gRPC run: {cpu_text}; max RSS of this process {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
