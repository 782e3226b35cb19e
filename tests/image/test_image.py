"""The container image, built from the Dockerfile and run with podman, checked from outside.

The build is the ``docker build`` command of docs/deploy.md, with podman standing in for docker
(tests/image/podman.py) on a stand-in for the official ``python:*-slim`` base made from Debian's
mirror (scripts/standin-base.sh; Debian's Python, so the build argument PYTHON_VERSION is the
stand-in's, printed at the end of the run). Then:

* the image as docs/deploy.md runs it (``--read-only --tmpfs /tmp``): its own user, PID 1, the
  read-only root, the HEALTHCHECK inside the container, Liveness on the health port, start-up;
* the image as the Helm chart's Deployment runs it (tests/image/pod.py): the rendered env,
  ConfigMap, securityContext and limits, with a real redis-server as the replay store; Verify
  and Check answer, the probes and the metrics endpoint answer; SIGTERM drains a call that is
  in flight and the container exits 0 within the grace period;
* the image's contents, seen from outside (``podman image mount``): no compiler, no pip, no
  build files; its size and layers, within budgets.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy import chart
from tests.image.conftest import DOCS, SESSION
from tests.image.pod import PodRun, pod_run
from tests.image.podman import BuiltImage, Container, Podman
from tests.support.net import free_port
from tests.support.redis_server import RedisServer, missing_redis_binaries
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as vpb
from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc as vpb_grpc
from verifier._generated.envoy.service.auth.v3 import attribute_context_pb2 as attributes
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as authz
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from verifier.cli.mint import KeyPair, generate_key, jwks_for, make_access_token, make_proof
from verifier.server.runtime import LIVENESS_HEALTH_SERVICE

# A hang guard: the first test also waits for the base (once per machine) and the build.
pytestmark = pytest.mark.timeout(1200)

MB = 1_000_000
# Budgets a regression breaks (measured on the stand-in base, figures in the closing summary).
ADDED_SIZE_BUDGET = 75 * MB
"""Bytes the Dockerfile adds to its base: the virtualenv (about 61 MB) and the healthcheck.
Wheels, a pip cache, build tools or a second copy of the venv left in the image break it."""
ADDED_LAYERS_BUDGET = 3
"""The user/pip RUN, the venv COPY and the healthcheck COPY."""
STARTUP_BUDGET_SECONDS = 10.0
"""``podman start`` to SERVING (about 1 s here): generous, for a busy 2-core machine; a
start-up that imports or compiles much more, or waits on the network, breaks it."""

SERVICE = "dpop.verifier.v1.VerifierService"
ISSUER = "https://issuer.image.test"
AUDIENCE = "https://api.image.test"
COMPILERS = re.compile(
    r"^(cc|c\+\+|c99|gcc|g\+\+|cpp|clang(\+\+)?|tcc|ld|ld\.(bfd|gold|lld)|as|make|cmake|rustc|cargo|go)"
    r"(-[\d.]+)?$|-(gcc|g\+\+|ld)(-[\d.]+)?$"
)
BIN_DIRS = ("usr/local/bin", "usr/local/sbin", "usr/bin", "usr/sbin", "bin", "sbin", "opt/venv/bin")
# What the runtime stage may add to its base (useradd's files and its backups, the service).
ALLOWED_ADDITIONS = re.compile(
    r"^(opt|opt/venv(/.*)?|opt/dpop-verifier|opt/dpop-verifier/healthcheck\.py"
    r"|etc/(passwd|group|shadow|gshadow)-?|var/log/(lastlog|faillog))$"
)


# --- helpers --------------------------------------------------------------------------------


def health(address: str, service: str = "", timeout: float = 5) -> str:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def wait_serving(container: Container, address: str, service: str = "", limit: float = 60) -> str:
    """Poll health until SERVING (a hang guard of ``limit`` seconds, not a measurement)."""
    deadline = time.monotonic() + limit
    status = "UNREACHABLE"
    while time.monotonic() < deadline:
        try:
            status = health(address, service, timeout=2)
        except grpc.RpcError as exc:
            status = exc.code().name
        if status == "SERVING":
            return status
        if not container.running():
            raise AssertionError(f"the container exited:\n{container.logs()[-4000:]}")
        time.sleep(0.05)
    return status


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def mounts(pid: int) -> dict[str, tuple[str, str]]:
    """Mount point -> (per-mount options, file-system type), as the process sees them."""
    found = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        found[parts[4]] = (parts[5], tail.split()[0])
    return found


def relative_paths(root: Path) -> set[str]:
    paths = set()
    for directory, dirs, files in os.walk(root):
        rel = os.path.relpath(directory, root)
        for name in dirs + files:
            paths.add(name if rel == "." else f"{rel}/{name}")
    return paths


def git_head() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=chart.ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def docs_run_args() -> tuple[list[str], list[int]]:
    """The flags of docs/deploy.md's ``docker run`` line, without ``--rm`` (the test removes
    the container after reading its exit) and without ``-p`` (the container shares the host's
    network; the published container ports are returned)."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"`(docker run [^`]+)`", text)
    assert match, f"no `docker run` line in {DOCS}"
    argv = shlex.split(match.group(1))
    assert "dpop-verifier" in argv[-1], argv
    flags, published = [], []
    words = iter(argv[2:-1])
    for word in words:
        if word == "--rm":
            continue
        if word == "-p":
            published.append(int(next(words).rpartition(":")[2]))
            continue
        flags.append(word)
    if "--read-only" in flags:
        flags.append("--read-only-tmpfs=false")  # docker's --read-only adds no tmpfs of its own
    return flags, published


# --- the image ------------------------------------------------------------------------------


def test_image_config_is_the_dockerfiles(image: BuiltImage) -> None:
    config = image.config
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/venv/bin/dpop-verifier"]
    assert config["Cmd"] == ["serve"]
    assert config["WorkingDir"] == "/tmp"
    assert config["StopSignal"] == "SIGTERM"
    assert set(config["ExposedPorts"]) == {"50051/tcp", "50052/tcp", "9464/tcp"}
    env = image.env
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert (env["DPOP_LISTEN"], env["DPOP_HEALTH_LISTEN"]) == ("0.0.0.0:50051", "0.0.0.0:50052")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["HOME"] == "/tmp"
    # --format docker keeps the HEALTHCHECK (the OCI format has no such field).
    probe = image.inspect["Healthcheck"]["Test"]
    assert probe[:3] == ["CMD", "/opt/venv/bin/python", "/opt/dpop-verifier/healthcheck.py"]
    assert probe[probe.index("--service") + 1] == LIVENESS_HEALTH_SERVICE
    # The build arguments of the docs' command reach the OCI labels.
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.revision"] == git_head()
    created = labels["org.opencontainers.image.created"]
    assert datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ"), created
    assert labels["org.opencontainers.image.base.name"] == image.base.name


def test_image_holds_the_service_and_nothing_to_build_with(
    podman: Podman, image: BuiltImage, figures: dict[str, str]
) -> None:
    with podman.mounted(image.id) as root, podman.mounted(image.base.name) as base_root:
        added = relative_paths(root) - relative_paths(base_root)
        unexpected = sorted(p for p in added if not ALLOWED_ADDITIONS.match(p))
        assert not unexpected, f"the runtime stage adds more than the service: {unexpected[:20]}"

        compilers = [
            f"{d}/{name}"
            for d in BIN_DIRS
            if (root / d).is_dir()
            for name in os.listdir(root / d)
            if COMPILERS.search(name)
        ]
        assert not compilers, compilers
        assert not list(root.glob("usr/lib/gcc/*/*/cc1")), "a C compiler's back end"

        pips = [f"{d}/{n}" for d in BIN_DIRS if (root / d).is_dir() for n in os.listdir(root / d)]
        assert not [p for p in pips if re.search(r"/pip[\d.]*$", p)], "a pip executable"
        packages = list(root.glob("**/site-packages/*")) + list(root.glob("**/dist-packages/*"))
        names = {p.name.split("-")[0].lower() for p in packages}
        for tool in ("pip", "setuptools", "wheel", "build"):
            assert tool not in names, f"{tool} is installed in the image"

        build_files = [
            p
            for p in added
            if p.endswith((".whl", "pyproject.toml", "setup.cfg", ".egg-info"))
            or (p.endswith("setup.py") and "/site-packages/" not in p)
            or p.startswith(("src", "wheels", "root/.cache"))
        ]
        assert not build_files, build_files

        venv = root / "opt/venv"
        assert (venv / "bin/dpop-verifier").is_file()
        compiled = list(venv.glob("lib/python3*/site-packages/verifier/__pycache__/*.pyc"))
        assert compiled, "modules must be byte-compiled at build time (read-only root)"
        mode = (root / "opt/dpop-verifier/healthcheck.py").stat().st_mode
        assert stat.S_IMODE(mode) == 0o555
        owners = {(root / p).lstat().st_uid for p in added if p.startswith("opt/")}
        assert owners == {0}, "the service's files belong to root, not to the user it runs as"
    figures["contents"] = (
        f"{len(added)} paths over the base, all under /opt/venv, /opt/dpop-verifier or "
        "useradd's; no compiler, no pip/setuptools/wheel, no wheels or sources"
    )


def test_size_and_layers_within_budget(image: BuiltImage, figures: dict[str, str]) -> None:
    figures["size"] = (
        f"{image.size / MB:.1f} MB in {image.layers} layers on the stand-in base; the "
        f"Dockerfile adds {image.added_size / MB:.1f} MB in {image.added_layers} layers "
        f"(budget {ADDED_SIZE_BUDGET / MB:.0f} MB, {ADDED_LAYERS_BUDGET} layers)"
    )
    assert image.added_size <= ADDED_SIZE_BUDGET, figures["size"]
    assert 0 < image.added_layers <= ADDED_LAYERS_BUDGET, figures["size"]


# --- run as docs/deploy.md runs it ------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """A started container, its environment (loopback listeners) and its start-up time."""

    container: Container
    env: dict[str, str]
    startup: float

    @property
    def address(self) -> str:
        return self.env["DPOP_LISTEN"]

    @property
    def health_address(self) -> str:
        return self.env["DPOP_HEALTH_LISTEN"]


def start(container: Container, env: dict[str, str]) -> Running:
    began = time.monotonic()
    container.start()
    status = wait_serving(container, env["DPOP_LISTEN"])
    assert status == "SERVING", f"{status}:\n{container.logs()[-4000:]}"
    return Running(container, env, time.monotonic() - began)


@pytest.fixture(scope="module")
def docs_container(podman: Podman, image: BuiltImage) -> Iterator[Running]:
    flags, published = docs_run_args()
    assert published == [50051]
    # The host's network: the listeners move from 0.0.0.0 to free loopback ports.
    env = {
        "DPOP_LISTEN": f"127.0.0.1:{free_port()}",
        "DPOP_HEALTH_LISTEN": f"127.0.0.1:{free_port()}",
    }
    with Container(podman, image.id, f"dpop-docs-{SESSION}", SESSION, flags, env) as container:
        yield start(container, env)


def test_runs_as_the_images_user_as_pid_1(docs_container: Running) -> None:
    status = proc_status(docs_container.container.host_pid)
    assert status["Uid"].split() == ["10001"] * 4
    assert status["Gid"].split() == ["10001"] * 4
    assert status["NSpid"].split()[-1] == "1", "the service is PID 1 (it handles SIGTERM)"
    assert int(status["CapEff"], 16) == 0


def test_root_filesystem_is_read_only_with_a_tmpfs_tmp(docs_container: Running) -> None:
    seen = mounts(docs_container.container.host_pid)
    assert seen["/"][0].split(",")[0] == "ro", seen["/"]
    options, filesystem = seen["/tmp"]
    assert filesystem == "tmpfs" and options.startswith("rw,"), seen["/tmp"]
    container = docs_container.container
    for path in ("/opt/venv/x", "/etc/x", "/x"):
        denied = container.exec("/bin/sh", "-c", f"echo > {path}")
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, path
    allowed = container.exec("/bin/sh", "-c", "echo ok > /tmp/x && cat /tmp/x")
    assert allowed.stdout.strip() == "ok", allowed.stderr


def test_healthcheck_passes_and_fails_when_the_service_hangs(docs_container: Running) -> None:
    container = docs_container.container
    passed = container.healthcheck()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert container.inspect()["State"]["Health"]["Status"] == "healthy"
    pid = container.host_pid
    os.kill(pid, signal.SIGSTOP)  # the process hangs: the probe's 3 s timeout must fire
    try:
        failed = container.healthcheck()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert failed.returncode != 0 and "unhealthy" in failed.stdout, failed.stdout + failed.stderr
    again = container.healthcheck()
    assert again.returncode == 0, again.stdout + again.stderr


def test_liveness_answers_on_the_health_port(docs_container: Running) -> None:
    assert health(docs_container.health_address, LIVENESS_HEALTH_SERVICE) == "SERVING"
    assert health(docs_container.address, SERVICE) == "SERVING"


def test_startup_to_serving_within_budget(docs_container: Running, figures: dict[str, str]) -> None:
    figures["start-up"] = (
        f"{docs_container.startup:.2f} s from `podman start` to SERVING "
        f"(budget {STARTUP_BUDGET_SECONDS:.0f} s)"
    )
    assert docs_container.startup <= STARTUP_BUDGET_SECONDS, figures["start-up"]


# --- run as the Helm chart's Deployment runs it ---------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def issuer_key() -> KeyPair:
    return generate_key("ES256")


def chart_pod(
    podman: Podman,
    image: BuiltImage,
    redis: RedisServer,
    issuer_key: KeyPair,
    directory: Path,
    name: str,
) -> tuple[Container, PodRun]:
    rendered = chart.render(
        {
            "replay": {"url": redis.url},
            "config": {
                "issuers": [
                    {
                        "issuer": ISSUER,
                        "audience": AUDIENCE,
                        "jwks_file": "issuer-jwks.json",
                        "algs": ["ES256"],
                    }
                ],
                "files": {"issuer-jwks.json": json.dumps(jwks_for(issuer_key))},
                # Long enough for the drain test's in-flight call to wait on a paused Redis.
                "settings": {"replay_timeout_ms": 20000},
            },
        }
    )
    run = pod_run(rendered, directory)
    container = Container(podman, image.id, name, SESSION, run.run_args, run.env, run.command)
    return container, run


@pytest.fixture(scope="module")
def pod(
    podman: Podman,
    image: BuiltImage,
    redis: RedisServer,
    issuer_key: KeyPair,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Running, PodRun]]:
    directory = tmp_path_factory.mktemp("pod")
    container, run = chart_pod(podman, image, redis, issuer_key, directory, f"dpop-chart-{SESSION}")
    with container:
        yield start(container, run.env), run


def verify_request(issuer_key: KeyPair, client: KeyPair, url: str) -> vpb.VerifyRequest:
    token = make_access_token(issuer_key, issuer=ISSUER, audience=AUDIENCE, jkt=client.jkt)
    return vpb.VerifyRequest(
        method="GET",
        target_uri=url,
        authorization=[f"DPoP {token}"],
        dpop=[make_proof(client, "GET", url, access_token=token)],
    )


def check_request(issuer_key: KeyPair, client: KeyPair) -> authz.CheckRequest:
    token = make_access_token(issuer_key, issuer=ISSUER, audience=AUDIENCE, jkt=client.jkt)
    proof = make_proof(client, "GET", "https://api.image.test/orders", access_token=token)
    http = attributes.AttributeContext.HttpRequest(
        method="GET", scheme="https", host="api.image.test", path="/orders", protocol="HTTP/1.1"
    )
    http.headers.update(
        {
            ":authority": "api.image.test",
            ":method": "GET",
            ":path": "/orders",
            "authorization": f"DPoP {token}",
            "dpop": proof,
        }
    )
    return authz.CheckRequest(
        attributes=attributes.AttributeContext(
            request=attributes.AttributeContext.Request(http=http)
        )
    )


def test_verify_and_check_answer_with_the_charts_configuration(
    pod: tuple[Running, PodRun], issuer_key: KeyPair
) -> None:
    running, _ = pod
    client = generate_key("ES256")
    request = verify_request(issuer_key, client, "https://api.image.test/orders")
    with grpc.insecure_channel(running.address) as channel:
        verify = vpb_grpc.VerifierServiceStub(channel)
        first = verify.Verify(request, timeout=10)
        assert (first.decision, first.reason_code) == (vpb.DECISION_ALLOW, "ok"), first
        assert first.jkt == client.jkt and first.claims.sub == "alice"
        # The same proof again: the chart's replay store (Redis) remembers it.
        second = verify.Verify(request, timeout=10)
        assert (second.decision, second.reason_code) == (vpb.DECISION_DENY, "replayed")

        check = authz_grpc.AuthorizationStub(channel).Check(
            check_request(issuer_key, client), timeout=10
        )
        assert check.HasField("ok_response"), check
        assert check.status.code == 0
        unsigned = check_request(issuer_key, generate_key("ES256"))
        unsigned.attributes.request.http.headers["dpop"] = "not-a-proof"
        denied = authz_grpc.AuthorizationStub(channel).Check(unsigned, timeout=10)
        assert denied.HasField("denied_response") and denied.denied_response.status.code == 401


def test_probes_and_metrics_answer_as_rendered(pod: tuple[Running, PodRun]) -> None:
    _, run = pod
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc_probe = run.rendered.verifier[probe]["grpc"]
        address = run.address(int(grpc_probe["port"]))
        assert health(address, grpc_probe.get("service", "")) == "SERVING", probe
    # The Service's "metrics" port (the ServiceMonitor scrapes it).
    port = next(p for p in run.rendered.verifier["ports"] if p["name"] == "metrics")
    address = run.address(int(port["containerPort"]))
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        body = response.read().decode()
    assert "# TYPE dpop_verifier_requests_in_flight gauge" in body, body[:1000]


def in_flight(metrics_address: str) -> float:
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        body = response.read().decode()
    values = re.findall(r"^dpop_verifier_requests_in_flight\{[^}]*\} (\S+)$", body, flags=re.M)
    return sum(float(v) for v in values)


def test_sigterm_drains_an_in_flight_call_and_exits_0_within_the_grace_period(
    podman: Podman,
    image: BuiltImage,
    redis: RedisServer,
    issuer_key: KeyPair,
    tmp_path: Path,
    figures: dict[str, str],
) -> None:
    container, run = chart_pod(podman, image, redis, issuer_key, tmp_path, f"dpop-drain-{SESSION}")
    grace = float(run.env["DPOP_SHUTDOWN_GRACE_SECONDS"])
    assert grace < run.grace_seconds, "the drain must fit in terminationGracePeriodSeconds"
    metrics = run.env["DPOP_METRICS_LISTEN"]
    with container, futures.ThreadPoolExecutor(1) as pool:
        running = start(container, run.env)
        request = verify_request(issuer_key, generate_key("ES256"), "https://api.image.test/a")
        channel = grpc.insecure_channel(running.address)
        stub = vpb_grpc.VerifierServiceStub(channel)
        redis.pause()  # the call's replay write waits: it is in flight
        try:
            call = pool.submit(stub.Verify, request, timeout=60)
            deadline = time.monotonic() + 30
            while in_flight(metrics) < 1:
                assert time.monotonic() < deadline and not call.done(), "never in flight"
                time.sleep(0.05)
            sent = time.monotonic()
            container.signal("TERM")  # as `docker stop` / the kubelet
            time.sleep(1.0)
            assert container.running(), "the service must wait for the call in flight"
            assert not call.done()
        finally:
            redis.resume()
        answer = call.result(timeout=30)
        code = container.wait(timeout=grace + 30)
        seconds = time.monotonic() - sent
        channel.close()
        logs = container.logs()
    assert answer.decision == vpb.DECISION_ALLOW, answer
    assert code == 0, logs[-4000:]
    assert seconds < grace, f"{seconds:.1f} s to exit; grace {grace:.0f} s"
    assert "received SIGTERM" in logs
    figures["drain"] = (
        f"SIGTERM with a call in flight: the call answered, exit 0 after {seconds:.1f} s "
        f"(grace {grace:.0f} s; 1 s of it was the paused Redis)"
    )
