#!/usr/bin/env python3
"""Ask a dpop-verifier for its gRPC health (``grpc.health.v1.Health/Check``); exit 0 if SERVING.

Stand-alone on purpose: it imports only grpcio and grpcio-health-checking (dependencies of the
service, so present in its image and virtualenv), never the ``verifier`` package. It is the
container image's ``HEALTHCHECK`` and the Helm chart's ``helm test`` probe.

    healthcheck.py                              # address from the environment (see below)
    healthcheck.py --address host:50051 --service dpop.verifier.v1.VerifierService
    healthcheck.py --address svc:50051 --wait 30   # retry until SERVING or 30 s have passed

Without ``--address`` the target is ``DPOP_HEALTH_LISTEN`` if set (the plaintext health-only
port), else ``DPOP_LISTEN``, else ``127.0.0.1:50051``; a wildcard host (``0.0.0.0``, ``[::]``,
empty) becomes loopback. If the main port serves TLS (``DPOP_TLS_CERT_FILE`` is set) and no
plaintext health port is configured, the probe refuses with exit code 2 and says why: set
``DPOP_HEALTH_LISTEN``, which the Helm chart and the container image always set.

Exit codes: 0 SERVING; 1 anything else (NOT_SERVING, unknown service, unreachable, timeout);
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence

DEFAULT_ADDRESS = "127.0.0.1:50051"
EXIT_SERVING, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2
_WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}  # noqa: S104


class ProbeConfigError(Exception):
    """The probe cannot tell where (or how) to connect."""


def loopback_target(listen: str) -> str:
    """Turn a listen address into an address to dial: a wildcard host becomes loopback.

    >>> loopback_target("0.0.0.0:50051"), loopback_target("[::]:50052"), loopback_target(":1")
    ('127.0.0.1:50051', '[::1]:50052', '127.0.0.1:1')
    """
    listen = listen.strip()
    if listen.startswith("unix:"):
        return listen
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ProbeConfigError(f"not a host:port address: {listen!r}")
    return f"{_WILDCARD_HOSTS.get(host, host)}:{port}"


def target_from_env(environ: Mapping[str, str]) -> str:
    """The address to probe when none is given: the health port, else the main port."""
    health = environ.get("DPOP_HEALTH_LISTEN", "").strip()
    if health:
        return loopback_target(health)
    if environ.get("DPOP_TLS_CERT_FILE", "").strip():
        raise ProbeConfigError(
            "the main port serves TLS and DPOP_HEALTH_LISTEN is not set: set DPOP_HEALTH_LISTEN "
            "(e.g. 0.0.0.0:50052) for a plaintext health port, or pass --address"
        )
    return loopback_target(environ.get("DPOP_LISTEN", "").strip() or DEFAULT_ADDRESS)


def check_once(target: str, service: str, timeout: float) -> tuple[bool, str]:
    """One Health/Check call. Returns (serving, human-readable status)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:  # a failed call is also a grpc.Call: it has code/details
            return False, f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="host:port to probe (default: from the environment)")
    parser.add_argument("--service", default="", help='health service name (default "": server)')
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per call (default 2)")
    parser.add_argument(
        "--wait", type=float, default=0.0, help="retry for up to this many seconds (default 0)"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing when SERVING")
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ

    try:
        target = loopback_target(args.address) if args.address else target_from_env(env)
    except ProbeConfigError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return EXIT_USAGE

    label = f"{target} service={args.service!r}"
    deadline = time.monotonic() + max(args.wait, 0.0)
    while True:
        serving, status = check_once(target, args.service, args.timeout)
        if serving:
            if not args.quiet:
                print(f"healthcheck: {label}: {status}")
            return EXIT_SERVING
        if time.monotonic() >= deadline:
            print(f"healthcheck: {label}: {status}", file=sys.stderr)
            return EXIT_UNHEALTHY
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))


if __name__ == "__main__":
    sys.exit(main())
