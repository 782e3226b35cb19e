"""mTLS-bound ``Check``s (RFC 8705) as a ratio of DPoP ``Check``s, on one service in one run.

    .venv/bin/python bench/bench_mtls.py [--n 2000] [--concurrency 8] [--rounds 3]

One service process (memory store) with one ``sender_constraint = "either"`` route, so that only
the binding differs. DPoP: an ES256 DPoP-bound token and a fresh proof per request. mTLS: an
``x5t#S256``-bound token sent as Bearer, with the client's certificate in
``attributes.source.certificate`` as Envoy's ``include_peer_certificate`` sends it (URL-encoded
PEM), the same certificate every time (as one client presents): its parse and hash are cached.
Alternating closed-loop rounds over gRPC, best of each; the ratio is mTLS/s over DPoP/s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._load import CHECK, check_request, closed_loop, count_allowed, fresh_requests
from tests.support.mtls import certificate_bound_token
from tests.support.mtls_pki import make_mtls_pki
from tests.support.service import ServiceProcess, TestIssuer, running_service
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as extauthz_pb
from verifier.cli.mint import generate_key

ROUTES = [{"path_prefix": "/", "sender_constraint": "either"}]


def mtls_requests(token: str, certificate_pem: str, n: int) -> list[bytes]:
    """``n`` Checks carrying ``token`` as Bearer and the client certificate as Envoy sends it."""
    request = extauthz_pb.CheckRequest.FromString(check_request(token, "unused"))
    headers = request.attributes.request.http.headers
    del headers["dpop"]
    headers["authorization"] = f"Bearer {token}"
    request.attributes.source.certificate = quote(certificate_pem, safe="")
    raw = request.SerializeToString()
    return [raw] * n


def measure(service: ServiceProcess, requests: list[bytes], concurrency: int) -> float:
    run = asyncio.run(closed_loop(service.address, CHECK, requests, concurrency))
    count_allowed(CHECK, run.answers)
    return run.per_second


def main(n: int, concurrency: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        issuer = TestIssuer(directory)
        pki = make_mtls_pki(directory / "pki")
        client = generate_key("ES256")
        dpop_token = issuer.token(client)
        mtls_token = certificate_bound_token(issuer, pki.client)
        env = {"DPOP_EXTAUTHZ_CLIENT_CERT": "peer"}
        with running_service(directory, issuer, env=env, routes=ROUTES) as service:
            measure(service, fresh_requests(CHECK, client, dpop_token, 200), concurrency)
            measure(service, mtls_requests(mtls_token, pki.client.pem, 200), concurrency)
            dpop, mtls = [], []
            for _ in range(rounds):
                dpop.append(
                    measure(service, fresh_requests(CHECK, client, dpop_token, n), concurrency)
                )
                mtls.append(
                    measure(service, mtls_requests(mtls_token, pki.client.pem, n), concurrency)
                )
    best_dpop, best_mtls = max(dpop), max(mtls)
    print(f"{'binding':<8} {'Checks/s':>10}  every round")
    print(f"{'DPoP':<8} {best_dpop:>10,.0f}  {', '.join(f'{x:,.0f}' for x in dpop)}")
    print(f"{'mTLS':<8} {best_mtls:>10,.0f}  {', '.join(f'{x:,.0f}' for x in mtls)}")
    print(f"mTLS-bound Checks/s as a ratio of DPoP Checks/s: {best_mtls / best_dpop:.2f}x "
          f"(n={n}, concurrency {concurrency}, best of {rounds} alternating rounds)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.n, args.concurrency, args.rounds)
