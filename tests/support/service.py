"""Run the real service (``python -m verifier serve``) as a subprocess for end-to-end tests.

The service binds port 0 and announces ``dpop-verifier listening on HOST:PORT`` on stdout; the
helper reads the port from that line. A test issuer (key + JWKS file + config) is made per
instance so tests can mint tokens the service trusts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc as pb_grpc
from verifier.cli.mint import KeyPair, generate_key, jwks_for, make_access_token, make_proof

ISSUER = "https://issuer.test"
AUDIENCE = "https://api.test"


class TestIssuer:
    """A local issuer: its key, and a config file that makes the service trust it."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, *, alg: str = "ES256") -> None:
        self.key = generate_key(alg)
        self.directory = directory
        self.jwks_file = directory / "jwks.json"
        self.jwks_file.write_text(json.dumps(jwks_for(self.key)), encoding="utf-8")

    def config(self, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "issuers": [{"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(self.jwks_file)}]
        }
        config.update(extra)
        return config

    def token(self, client: KeyPair | None, **kwargs: Any) -> str:
        kwargs.setdefault("audience", AUDIENCE)
        return make_access_token(
            self.key, issuer=ISSUER, jkt=client.jkt if client else None, **kwargs
        )


class ServiceProcess:
    """One ``dpop-verifier serve`` process."""

    def __init__(
        self, config_file: Path, env: Mapping[str, str] | None = None, *, start_timeout: float = 20
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOP_", "OTEL_"))}
        full_env.update({"DPOP_LISTEN": "127.0.0.1:0", "DPOP_CONFIG_FILE": str(config_file)})
        full_env.update(env or {})
        self.stderr_lines: list[str] = []
        self.http_address = ""
        """The forward-auth listener's ``host:port``, when ``DPOP_HTTP_LISTEN`` is set."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "verifier", "serve"],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.address = self._await_address(start_timeout)
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.VerifierServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def _await_address(self, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("dpop-verifier forward-auth listening on "):
                self.http_address = line.split()[-1]
            if line.startswith("dpop-verifier listening on "):
                return line.split()[-1]
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError("service did not start:\n" + "".join(self.stderr_lines[-30:]))

    def verify(self, **fields: Any) -> pb.VerifyResponse:
        response: pb.VerifyResponse = self.stub.Verify(pb.VerifyRequest(**fields), timeout=10)
        return response

    def health_status(self, service: str = "") -> str:
        reply = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def wait_health(self, status: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health_status() == status:
                return
            time.sleep(0.1)
        raise AssertionError(f"health never became {status}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self, "channel"):
            self.channel.close()


@contextmanager
def running_service(
    tmp_path: Path, issuer: TestIssuer, env: Mapping[str, str] | None = None, **config: Any
) -> Iterator[ServiceProcess]:
    """Start a service trusting ``issuer`` (extra config keys as keyword arguments)."""
    config_file = tmp_path / f"config-{time.monotonic_ns()}.json"
    config_file.write_text(json.dumps(issuer.config(**config)), encoding="utf-8")
    service = ServiceProcess(config_file, env)
    try:
        yield service
    finally:
        service.stop()


def dpop_request(
    client: KeyPair,
    token: str,
    *,
    method: str = "GET",
    url: str = "https://api.test/orders",
    nonce: str | None = None,
) -> dict[str, Any]:
    """The fields of a valid VerifyRequest for ``client`` presenting ``token``."""
    proof = make_proof(client, method, url, access_token=token, nonce=nonce)
    return {
        "method": method,
        "target_uri": url,
        "authorization": [f"DPoP {token}"],
        "dpop": [proof],
    }
