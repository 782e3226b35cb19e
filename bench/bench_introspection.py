"""Introspection benchmark: what an opaque-token request costs with and without the cache.

    .venv/bin/python bench/bench_introspection.py [--n 1000] [--concurrency 4]

The authorization server is the test stand-in (tests/support/auth_server.py, Python's threaded
http.server) running in its own process on loopback, so its CPU is not this process's. The
service side is the real wiring (``build_app``) deciding through ``Verifier.verify`` in process,
on ``--concurrency`` threads as the gRPC worker threads do; proofs are made before the clock
starts. Rows:

  * JWT, verified locally (reference; every token distinct, so no verified-token cache hit);
  * opaque, uncached: every token distinct, each one introspection call over HTTP/1.1 keep-alive;
  * opaque, cached: one token, every request served from the introspection cache.

Sequential rows show latency per request; concurrent rows show throughput with ``--concurrency``
requests in flight (the stand-in, a threaded Python server, saturates at a few hundred calls per
second on a small machine: past that, uncached rows measure it, not us). ``CPU ms/req`` is this
process's CPU time per request: the service's own cost. Against a real issuer, add its latency
(and a TLS handshake per new pooled connection) to every uncached request.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.auth_server import CLIENT_ID, CLIENT_SECRET, AuthServer
from verifier.app import App, build_app
from verifier.cli import mint
from verifier.config import IssuerSettings, Settings
from verifier.domain.model import RequestFacts

URL = "https://api.test/orders"
AUDIENCE = "https://api.test"


def _serve(jkt: str, ready: Any, stop: Any) -> None:
    server = AuthServer()
    server.introspection_default = {
        "active": True,
        "token_type": "DPoP",
        "cnf": {"jkt": jkt},
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": int(time.time()) + 3600,
    }
    ready.put((server.issuer, server.signing_key.private_jwk()))
    stop.wait()
    server.stop()


def _facts(client: mint.KeyPair, token: str) -> RequestFacts:
    proof = mint.make_proof(client, "GET", URL, access_token=token)
    return RequestFacts(
        method="GET", target_uri=URL, authorization=(f"DPoP {token}",), dpop=(proof,)
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(app: App, items: list[RequestFacts], concurrency: int) -> tuple[float, float, list[float]]:
    latencies: list[float] = []

    def worker(share: list[RequestFacts]) -> None:
        for facts in share:
            started = time.perf_counter()
            decision = app.engine.verify(facts)
            latencies.append(time.perf_counter() - started)
            assert decision.allow, decision.reason

    threads = [
        threading.Thread(target=worker, args=(items[i::concurrency],)) for i in range(concurrency)
    ]
    started, cpu = time.perf_counter(), _cpu()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, _cpu() - cpu, latencies


def _row(name: str, n: int, seconds: float, cpu: float, latencies: list[float]) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (
        f"{name:<38}{n / seconds:>10,.0f}{q[49] * 1000:>9.2f}{q[98] * 1000:>9.2f}"
        f"{cpu / n * 1000:>12.3f}"
    )


def main(n: int, concurrency: int) -> None:
    client = mint.generate_key("ES256")
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(client.jkt, ready, stop), daemon=True)
    process.start()
    issuer, signing_jwk = ready.get(timeout=30)
    signing = mint.load_key(signing_jwk)
    settings = Settings(
        issuers=(
            IssuerSettings(
                issuer=issuer,
                audience=AUDIENCE,
                discovery=True,
                introspection_client_id=CLIENT_ID,
                introspection_secret=CLIENT_SECRET,
                opaque_tokens=True,
                introspection_cache_seconds=3600,
            ),
        )
    )
    app = build_app(settings)
    asyncio.run(app.start())
    print(f"{'measurement':<38}{'per second':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}")
    try:
        for width in (1, concurrency):
            label = "sequential" if width == 1 else f"{width} concurrent"
            jwts = [
                mint.make_access_token(
                    signing, issuer=issuer, jkt=client.jkt, audience=AUDIENCE, kid="key-1"
                )
                for _ in range(n)
            ]
            rows = {
                f"JWT, verified locally, {label}": [_facts(client, t) for t in jwts],
                f"opaque, uncached, {label}": [
                    _facts(client, f"tok-{width}-{i}-{time.time_ns()}") for i in range(n)
                ],
                f"opaque, cached, {label}": [_facts(client, "tok-cached") for _ in range(n)],
            }
            app.engine.verify(_facts(client, "tok-cached"))  # fill the cache
            for name, items in rows.items():
                seconds, cpu, latencies = _run(app, items, width)
                print(_row(name, n, seconds, cpu, latencies))
        introspector = app.issuers[0].trusted.introspector
        assert introspector is not None
        counters = introspector.counters
        print(f"introspection calls: {counters.calls}, cache hits: {counters.cache_hits}")
    finally:
        asyncio.run(app.close())
        stop.set()
        process.join(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    main(args.n, args.concurrency)
