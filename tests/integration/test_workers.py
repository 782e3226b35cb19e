"""``DPOP_WORKERS=2``: the real supervisor and its real worker processes on loopback.

Which worker answered is read from the decision lines (each carries the worker's ``pid``), the
workers' pids from ``/proc``. Calls are spread over several connections, because the kernel
hands each new connection (not each call) to one of the listening processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import free_port
from tests.support.service import ServiceProcess, TestIssuer, dpop_request
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc as pb_grpc
from verifier.cli.mint import KeyPair, generate_key

T = TypeVar("T")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def client() -> KeyPair:
    return generate_key("ES256")


def write_config(path: Path, issuer: TestIssuer, **extra: Any) -> Path:
    path.write_text(json.dumps(issuer.config(**extra)), encoding="utf-8")
    return path


@pytest.fixture
def workers(tmp_path: Path, issuer: TestIssuer) -> Iterator[ServiceProcess]:
    config = write_config(tmp_path / "config.json", issuer)
    service = ServiceProcess(config, {"DPOP_WORKERS": "2", "DPOP_SHUTDOWN_GRACE_SECONDS": "2"})
    try:
        yield service
    finally:
        service.stop()


def children(service: ServiceProcess) -> set[int]:
    pid = service.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8")
    return {int(p) for p in text.split()}


def wait_for(condition: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def decision_pids(service: ServiceProcess) -> list[int]:
    pids = []
    for line in list(service.stderr_lines):
        if line.startswith("{") and '"event":"decision"' in line:
            pids.append(json.loads(line)["pid"])
    return pids


def verify_on_new_connections(
    address: str, client: KeyPair, issuer: TestIssuer, connections: int, **request: Any
) -> list[pb.VerifyResponse]:
    token = issuer.token(client)
    responses = []
    for _ in range(connections):
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.VerifierServiceStub(channel)
            fields = {**dpop_request(client, token), **request}
            responses.append(stub.Verify(pb.VerifyRequest(**fields), timeout=10))
    return responses


def test_two_workers_share_the_port_and_each_exports_its_own_metrics(
    tmp_path: Path, issuer: TestIssuer, client: KeyPair
) -> None:
    metrics_port = next(p for p in iter(free_port, 0) if _free(p + 1))
    env = {
        "DPOP_WORKERS": "2",
        "DPOP_HEALTH_LISTEN": "127.0.0.1:0",
        "DPOP_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
    }
    service = ServiceProcess(write_config(tmp_path / "config.json", issuer), env)
    try:
        pids = children(service)
        assert len(pids) == 2
        responses = verify_on_new_connections(service.address, client, issuer, 16)
        assert [r.reason_code for r in responses] == ["ok"] * 16

        answered = wait_for(lambda: len(decision_pids(service)) == 16 and decision_pids(service))
        assert set(answered) == pids  # both workers answered calls on the one port

        # The health port is shared too: both workers bound the one the supervisor resolved.
        health_lines = [line for line in service.stderr_lines if "grpc.health.v1 on" in line]
        health_addresses = {line.split(" on ")[1].split()[0] for line in health_lines}
        assert len(health_lines) == 2 and len(health_addresses) == 1
        with grpc.insecure_channel(health_addresses.pop()) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        # Worker i serves its own metrics on port + i; together they count every call.
        allowed = [_allowed(metrics_port + i) for i in (0, 1)]
        assert all(count > 0 for count in allowed) and sum(allowed) == 16

        # Log lines name the worker; the supervisor says how many it runs.
        assert any("starting 2 workers" in line for line in service.stderr_lines)
        assert any("[worker 1 pid" in line for line in service.stderr_lines)
    finally:
        service.stop()
    assert service.process.returncode == 0


def test_a_killed_worker_is_restarted_and_the_port_keeps_answering(
    workers: ServiceProcess, issuer: TestIssuer, client: KeyPair
) -> None:
    before = children(workers)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # Connections the kernel queued on the dying worker before it was reaped are reset (that
    # is a crash); the claim is that the port answers once the supervisor has seen it go.
    wait_for(lambda: any("was killed by SIGKILL" in line for line in workers.stderr_lines))

    responses = verify_on_new_connections(workers.address, client, issuer, 8)
    assert [r.reason_code for r in responses] == ["ok"] * 8

    after = wait_for(lambda: (pids := children(workers)) and len(pids) == 2 and pids)
    assert victim not in after and after & before == before - {victim}
    wait_for(lambda: sum("listening" in line for line in workers.stderr_lines) >= 3)
    responses = verify_on_new_connections(workers.address, client, issuer, 16)
    assert [r.reason_code for r in responses] == ["ok"] * 16
    assert set(decision_pids(workers)[-16:]) == after
    assert any("was killed by SIGKILL: restarting" in line for line in workers.stderr_lines)


def test_sighup_rolls_the_workers_under_load_without_a_failed_call(
    workers: ServiceProcess, issuer: TestIssuer, client: KeyPair, tmp_path: Path
) -> None:
    before = children(workers)
    token = issuer.token(client)
    failures: list[str] = []
    shutdown_races: list[str] = []
    reasons: list[str] = []
    done = threading.Event()

    def load() -> None:
        # One long-lived connection (as a sidecar keeps) and a new connection every 5 calls.
        steady = grpc.insecure_channel(workers.address)
        stubs = [pb_grpc.VerifierServiceStub(steady)]
        fresh: grpc.Channel | None = None
        calls = 0
        while not done.is_set():
            if calls % 5 == 0:
                if fresh is not None:
                    fresh.close()
                fresh = grpc.insecure_channel(workers.address)
                stubs[1:] = [pb_grpc.VerifierServiceStub(fresh)]
            for stub in stubs:
                try:
                    reply = stub.Verify(
                        pb.VerifyRequest(**dpop_request(client, token), explain=True), timeout=5
                    )
                    reasons.append(reply.reason_code)
                    if reply.checks:
                        explained.set()
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.CANCELLED:
                        # gRPC's server cancels a call that reaches it in the instant its
                        # graceful shutdown begins (grpc/grpc#41785): not a refused connection.
                        shutdown_races.append(exc.details() or "")
                    else:
                        failures.append(f"{exc.code()}: {exc.details()}")
            calls += 1
        steady.close()
        if fresh is not None:
            fresh.close()

    explained = threading.Event()
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(reasons) > 20)
        assert not explained.is_set()  # allow_explain is off so far
        # The new workers read the configuration afresh.
        write_config(tmp_path / "config.json", issuer, allow_explain=True)  # the fixture's
        workers.process.send_signal(signal.SIGHUP)
        wait_for(lambda: any("rolling restart done" in line for line in workers.stderr_lines))
        after = wait_for(lambda: len(pids := children(workers)) == 2 and pids, timeout=10)
        assert not after & before
        served = len(reasons)
        wait_for(lambda: len(reasons) > served + 20)
    finally:
        done.set()
        thread.join(timeout=10)
    assert not failures, failures[:5]
    assert len(shutdown_races) <= 2, shutdown_races
    assert set(reasons) == {"ok"} and len(reasons) > 40
    assert explained.is_set()

    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(timeout=15) == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in after)


def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_error(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    broken_jwks = tmp_path / "broken-jwks.json"
    broken_jwks.write_text("{not json", encoding="utf-8")
    config = issuer.config()
    config["issuers"][0]["jwks_file"] = str(broken_jwks)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOP_", "OTEL_"))}
    env.update(
        {"DPOP_WORKERS": "2", "DPOP_LISTEN": "127.0.0.1:0", "DPOP_CONFIG_FILE": str(config_file)}
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "verifier", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2  # a worker's configuration error, as without workers
    assert time.monotonic() - started < 15
    assert "configuration error" in result.stderr and "giving up" in result.stderr
    assert "listening on" not in result.stdout


def test_more_than_one_worker_needs_a_tcp_listener() -> None:
    from verifier.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_WORKERS": "2", "DPOP_LISTEN": "unix:/tmp/dpop.sock"})
    assert raised.value.setting == "DPOP_WORKERS"
    assert load_settings(environ={"DPOP_LISTEN": "unix:/tmp/dpop.sock"}).workers == 1


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _allowed(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        families = {f.name: f for f in text_string_to_metric_families(reply.read().decode())}
    return sum(
        s.value
        for s in families["dpop_verifier_decisions"].samples
        if s.name == "dpop_verifier_decisions_total" and s.labels["dpop_decision"] == "allow"
    )
