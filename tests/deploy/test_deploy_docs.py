"""The deployment walk-throughs (README "Deploy to Kubernetes", docs/deploy.md) run against the
chart: every ``--set`` key exists in values.schema.json, every ``helm install``/``upgrade`` of the
chart renders with Helm's engine into objects the Kubernetes API accepts, the Secrets the pods
mount are the ones the ``kubectl create secret`` lines create, and the Istio mesh config shown
is the one the chart prints for that release."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import chart
from tests.deploy.chart import ROOT, Rendered

CHART_ARG = "./helm/dpop-verifier"
KUBE_VERSION = "1.30.0"  # the chart's kubeVersion floor


def _readme_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Deploy to Kubernetes\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


DOCS = {
    "README": _readme_section,
    "docs/deploy.md": lambda: (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8"),
}


@dataclass
class HelmRun:
    """One ``helm install``/``helm upgrade`` of the chart, as written in the docs."""

    release: str
    namespace: str
    files: list[str]
    sets: list[tuple[str, str]]


@dataclass
class Walkthrough:
    """What a document's shell blocks do: files written, secrets created, helm calls."""

    files: dict[str, str] = field(default_factory=dict)
    secrets: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    chart_runs: list[HelmRun] = field(default_factory=list)
    mesh_files: list[str] = field(default_factory=list)
    helm_tests: list[tuple[str, str]] = field(default_factory=list)
    yaml_blocks: list[str] = field(default_factory=list)


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def _commands(script: str, files: dict[str, str]) -> list[list[str]]:
    """The script's commands as argument lists; heredocs (``cat > f <<'EOF'``) go to ``files``."""
    commands: list[list[str]] = []
    lines = iter(script.splitlines())
    pending = ""
    for line in lines:
        heredoc = re.fullmatch(r"cat > (\S+) <<'(\w+)'", line.strip())
        if heredoc:
            body = []
            for inner in lines:
                if inner == heredoc.group(2):
                    break
                body.append(inner)
            files[heredoc.group(1)] = "\n".join(body) + "\n"
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        words = shlex.split(pending + line, comments=True)
        pending = ""
        if words:
            commands.append(words)
    return commands


def _option(words: list[str], *names: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word in names]


def _positional(words: list[str]) -> list[str]:
    with_value = {"-n", "--namespace", "-f", "--values", "--set"}
    found, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in with_value:
            skip = True
        elif not word.startswith("-"):
            found.append(word)
    return found


def walkthrough(text: str) -> Walkthrough:
    done = Walkthrough(yaml_blocks=_blocks(text, "yaml"))
    for script in _blocks(text, "sh"):
        for words in _commands(script, done.files):
            namespace = next(iter(_option(words, "-n", "--namespace")), "default")
            args = _positional(words)
            if args[:4] == ["kubectl", "create", "secret", "generic"]:
                keys = done.secrets.setdefault((namespace, args[4]), set())
                for word in words:
                    if word.startswith("--from-literal="):
                        keys.add(word.removeprefix("--from-literal=").split("=", 1)[0])
            elif args[:2] == ["helm", "test"]:
                done.helm_tests.append((args[2], namespace))
            elif args[:2] in (["helm", "install"], ["helm", "upgrade"]) and args[3] == CHART_ARG:
                items = [
                    item
                    for value in _option(words, "--set")
                    for item in value.split(",")  # helm splits --set values on commas
                ]
                assert all("=" in item for item in items), f"--set without '=': {words}"
                sets = [(key, value) for key, value in (item.split("=", 1) for item in items)]
                files = _option(words, "-f", "--values")
                done.chart_runs.append(HelmRun(args[2], namespace, files, sets))
            elif args[:2] == ["helm", "upgrade"] and "meshConfig" in " ".join(
                done.files.get(f, "") for f in _option(words, "-f", "--values")
            ):
                done.mesh_files.extend(_option(words, "-f", "--values"))
    return done


def _typed(value: str) -> Any:
    """A ``--set`` value as Helm types it (strvals): booleans, null and integers; else a string."""
    if value in ("true", "false"):
        return value == "true"
    if value == "null":
        return None
    if re.fullmatch(r"-?(0|[1-9][0-9]*)", value):
        return int(value)
    return value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def values_of(run: HelmRun, files: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in run.files:
        assert name in files, f"-f {name} is not written by the walk-through"
        _merge(values, yaml.safe_load(files[name]))
    for key, value in run.sets:
        assert "[" not in key, f"--set {key}: list indices are not supported here"
        node = values
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = _typed(value)
    return values


@pytest.fixture(scope="module", params=sorted(DOCS))
def doc(request: pytest.FixtureRequest) -> tuple[str, Walkthrough, list[Rendered]]:
    name: str = request.param
    done = walkthrough(DOCS[name]())
    assert done.chart_runs, f"{name}: no `helm install {CHART_ARG}` found"
    rendered = [
        chart.render(values_of(run, done.files), release=run.release, namespace=run.namespace)
        for run in done.chart_runs
    ]
    return name, done, rendered


def test_every_set_key_is_a_chart_value(doc: tuple[str, Walkthrough, list[Rendered]]) -> None:
    name, done, _ = doc
    schema = chart.schema()
    unknown = [
        key
        for run in done.chart_runs
        for key, _ in run.sets
        if chart.schema_node(schema, key) is None
    ]
    assert not unknown, f"{name}: --set keys missing from values.schema.json: {unknown}"


def test_every_rendered_object_validates(doc: tuple[str, Walkthrough, list[Rendered]]) -> None:
    name, _, rendered = doc
    for result in rendered:
        for manifest in result.manifests:
            try:
                chart.validate_object(manifest.doc, KUBE_VERSION)
            except Exception as exc:
                message = getattr(exc, "message", str(exc))
                pytest.fail(f"{name}: {manifest.kind}/{manifest.name}: {message}")


def test_mounted_secrets_are_the_ones_created(doc: tuple[str, Walkthrough, list[Rendered]]) -> None:
    name, done, rendered = doc
    for run, result in zip(done.chart_runs, rendered, strict=True):
        assert not result.all("Secret"), f"{name}: secrets should come from existing Secrets"
        volumes = result.deployment["spec"]["template"]["spec"]["volumes"]
        mounted = [
            (source["secret"]["name"], item["key"])
            for volume in volumes
            for source in volume.get("projected", {}).get("sources", [])
            for item in source["secret"]["items"]
        ]
        assert mounted, f"{name}: the verifier mounts no secret"
        for secret, key in mounted:
            created = done.secrets.get((run.namespace, secret), set())
            assert key in created, (
                f"{name}: key {key!r} of Secret {run.namespace}/{secret} is not created"
            )


def test_replay_store_is_redis(doc: tuple[str, Walkthrough, list[Rendered]]) -> None:
    name, _, rendered = doc
    for result in rendered:
        assert result.env["DPOP_REPLAY_URL"].startswith("redis://"), name
        assert "DPOP_REDIS_PASSWORD_FILE" in result.env, name


def test_istio_mesh_config_is_the_one_the_chart_prints(
    doc: tuple[str, Walkthrough, list[Rendered]],
) -> None:
    name, done, rendered = doc
    assert done.mesh_files, f"{name}: no istiod meshConfig step"
    printed = [
        yaml.safe_load(result.notes.split("with mesh-values.yaml:", 1)[1].split("\n\n", 2)[1])
        for result in rendered
        if "with mesh-values.yaml:" in result.notes
    ]
    assert printed, f"{name}: no helm call renders the Istio AuthorizationPolicy"
    for mesh_file in done.mesh_files:
        assert yaml.safe_load(done.files[mesh_file]) in printed, f"{name}: {mesh_file} differs"


def test_authorization_policy_uses_the_declared_provider(
    doc: tuple[str, Walkthrough, list[Rendered]],
) -> None:
    name, done, rendered = doc
    providers = {
        provider["name"]
        for mesh_file in done.mesh_files
        for provider in yaml.safe_load(done.files[mesh_file])["meshConfig"]["extensionProviders"]
    }
    policies = [p for result in rendered for p in result.all("AuthorizationPolicy")]
    assert policies, f"{name}: no AuthorizationPolicy rendered"
    for policy in policies:
        assert policy["spec"]["action"] == "CUSTOM"
        assert policy["spec"]["provider"]["name"] in providers
    # A policy shown as YAML ("equivalent to applying") is the one rendered.
    for block in done.yaml_blocks:
        shown = yaml.safe_load(block)
        if isinstance(shown, dict) and shown.get("kind") == "AuthorizationPolicy":
            assert any(
                {k: p[k] for k in ("apiVersion", "kind", "spec")}
                == {k: shown[k] for k in ("apiVersion", "kind", "spec")}
                and p["metadata"]["namespace"] == shown["metadata"]["namespace"]
                for p in policies
            ), f"{name}: the AuthorizationPolicy shown is not what the chart renders"


def test_helm_test_targets_an_installed_release(
    doc: tuple[str, Walkthrough, list[Rendered]],
) -> None:
    name, done, rendered = doc
    assert done.helm_tests, f"{name}: no `helm test`"
    installed = {(run.release, run.namespace) for run in done.chart_runs}
    assert set(done.helm_tests) <= installed, name
    for result in rendered:
        hooks = [
            pod
            for pod in result.all("Pod")
            if pod["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
        ]
        assert hooks, f"{name}: no helm test pod rendered"


def test_readme_section_links_resolve() -> None:
    section = _readme_section()
    links = re.findall(r"\]\(([^)#]+)\)", section)
    assert "docs/deploy.md" in links
    for link in links:
        if "://" not in link:
            assert (ROOT / link).exists(), f"README Deploy to Kubernetes links to missing {link}"


def test_set_values_are_typed_like_helm() -> None:
    run = HelmRun("r", "n", [], [("a.b", "true"), ("a.c", "0.1.0"), ("d", "5"), ("e", "null")])
    assert values_of(run, {}) == {"a": {"b": True, "c": "0.1.0"}, "d": 5, "e": None}
    assert Path(ROOT / CHART_ARG).is_dir()
