"""Which HTTP server carries the forward-auth listener: a null application on each candidate.

    .venv/bin/python bench/bench_http_stacks.py [--n 4000] [--concurrency 8] [--rounds 3]

Each candidate serves a null application (``200``, no body, one identity header) from its own
process pinned to core 0; the load generator (asyncio, keep-alive HTTP/1.1 connections, the
same requests as the forward-auth rows of ``bench/run.py``) runs here on core 1. Candidates
not installed are reported as such (uvicorn and hypercorn are not dependencies: ``pip install
uvicorn httptools hypercorn`` into the venv to compare). Alternating rounds, best of each;
ratios to waitress, the listener's server.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._load import http_closed_loop
from tests.support.net import free_port

SERVER = r"""
import asyncio, sys
which, port = sys.argv[1], int(sys.argv[2])
HEADERS = [("content-length", "0"), ("x-dpop-jkt", "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")]
def wsgi(environ, start_response):
    start_response("200 OK", HEADERS)
    return [b""]
async def asgi(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(k.encode(), v.encode()) for k, v in HEADERS]})
        await send({"type": "http.response.body", "body": b""})
print("ready", flush=True)
if which == "waitress":
    import waitress
    waitress.serve(wsgi, listen=f"127.0.0.1:{port}", threads=16, connection_limit=4096,
                   asyncore_use_poll=True, _quiet=True)
elif which.startswith("uvicorn"):
    import uvicorn
    uvicorn.run(asgi, host="127.0.0.1", port=port, http=which.split("-")[1], log_level="error",
                access_log=False, lifespan="off")
elif which == "hypercorn":
    import hypercorn.asyncio, hypercorn.config
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = config.errorlog = None
    asyncio.run(hypercorn.asyncio.serve(asgi, config))
"""
CANDIDATES = {
    "waitress": ("waitress",),
    "uvicorn-httptools": ("uvicorn", "httptools"),
    "uvicorn-h11": ("uvicorn", "h11"),
    "hypercorn": ("hypercorn",),
}


def request(i: int) -> bytes:
    return (
        f"GET /verify HTTP/1.1\r\nHost: verifier:8081\r\nX-Forwarded-Method: GET\r\n"
        f"X-Forwarded-Uri: /orders/{i}\r\nX-Forwarded-Host: api.test\r\n\r\n"
    ).encode()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1 % os.cpu_count()})  # type: ignore[operator]
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    best: dict[str, float] = {}
    try:
        for name, modules in CANDIDATES.items():
            if not all(importlib.util.find_spec(m) for m in modules):
                print(f"{name:18}  not installed")
                continue
            port = free_port()
            process = subprocess.Popen(
                ["taskset", "-c", "0", sys.executable, "-c", SERVER, name, str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert process.stdout is not None
            process.stdout.readline()
            time.sleep(1.0)
            servers[name] = (process, port)
        requests = [request(i) for i in range(args.n)]
        for _ in range(args.rounds):
            for name, (_, port) in servers.items():
                run = asyncio.run(http_closed_loop(f"127.0.0.1:{port}", requests, args.concurrency))
                if set(run.answers) != {b"200"}:
                    raise SystemExit(f"{name}: answers {set(run.answers)}")
                best[name] = max(best.get(name, 0.0), run.per_second)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()
    base = best.get("waitress")
    for name, rate in best.items():
        ratio = f"{rate / base:.2f}x waitress" if base else ""
        print(f"{name:18}  {rate:8,.0f} req/s  {ratio}")
    print(f"(null application, c={args.concurrency}, best of {args.rounds} alternating rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
