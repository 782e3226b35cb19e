"""scripts/healthcheck.py: the image's HEALTHCHECK and the chart's `helm test` probe."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy.chart import ROOT
from tests.support.net import free_port

SCRIPT = ROOT / "scripts" / "healthcheck.py"
SERVICE = "dpop.verifier.v1.VerifierService"


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    """A plain grpc.health.v1 server on loopback: "" SERVING, the verifier NOT_SERVING."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("0.0.0.0:50051", "127.0.0.1:50051"),
        ("[::]:50052", "[::1]:50052"),
        ("10.1.2.3:9", "10.1.2.3:9"),
        ("localhost:1", "localhost:1"),
        ("unix:/tmp/s.sock", "unix:/tmp/s.sock"),
    ],
)
def test_listen_addresses_become_dialable_targets(
    probe: ModuleType, listen: str, target: str
) -> None:
    assert probe.loopback_target(listen) == target


def test_target_prefers_the_plaintext_health_port(probe: ModuleType) -> None:
    env = {"DPOP_LISTEN": "0.0.0.0:50051", "DPOP_HEALTH_LISTEN": "0.0.0.0:50052"}
    assert probe.target_from_env(env) == "127.0.0.1:50052"
    assert probe.target_from_env({"DPOP_LISTEN": "0.0.0.0:6000"}) == "127.0.0.1:6000"
    assert probe.target_from_env({}) == "127.0.0.1:50051"
    with pytest.raises(probe.ProbeConfigError, match="DPOP_HEALTH_LISTEN"):
        probe.target_from_env({"DPOP_LISTEN": "0.0.0.0:1", "DPOP_TLS_CERT_FILE": "/c.pem"})


def test_exit_codes(probe: ModuleType, health_server: tuple[str, object]) -> None:
    address, _ = health_server
    assert probe.main(["--address", address, "--quiet"], environ={}) == 0
    assert probe.main(["--address", address, "--service", SERVICE], environ={}) == 1
    assert probe.main(["--address", address, "--service", "nope"], environ={}) == 1
    unreachable = f"127.0.0.1:{free_port()}"
    assert probe.main(["--address", unreachable, "--timeout", "0.5"], environ={}) == 1
    tls_env = {"DPOP_LISTEN": address, "DPOP_TLS_CERT_FILE": "/cert.pem"}
    assert probe.main([], environ=tls_env) == 2
    port = address.rpartition(":")[2]
    assert probe.main([], environ={"DPOP_LISTEN": f"0.0.0.0:{port}"}) == 0


def test_wait_retries_until_serving(
    probe: ModuleType, health_server: tuple[str, health.HealthServicer]
) -> None:
    import threading

    address, servicer = health_server
    timer = threading.Timer(
        0.5, servicer.set, args=(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    )
    timer.start()
    try:
        assert probe.main(["--address", address, "--service", SERVICE, "--wait", "10"]) == 0
    finally:
        timer.cancel()


def test_runs_as_a_script_without_the_verifier_package(
    health_server: tuple[str, object],
) -> None:
    address, _ = health_server
    code = (
        "import sys, runpy; sys.modules['verifier'] = None; "  # importing verifier would fail
        f"sys.argv = ['healthcheck', '--address', {address!r}]; "
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "SERVING" in result.stdout
