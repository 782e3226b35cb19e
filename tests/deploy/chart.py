"""Rendering and validating the Helm chart from Python, with Helm's own Go SDK.

``helm-python-sdk`` bundles Helm's Go SDK as a shared library (no ``helm`` binary is needed):
``Chart.render`` is Helm's template engine (values coalescing, ``values.schema.json``
validation, sprig functions, ``include``/``tpl``) and ``lint`` is ``helm lint``.
``kubernetes-validate`` carries the OpenAPI schemas of the Kubernetes API, per version, inside
its wheel, so validation works offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "dpop-verifier"
CRD_SCHEMA_DIR = Path(__file__).resolve().parent / "crd_schemas"
RELEASE = "dv"
NAMESPACE = "apps"
FULLNAME = f"{RELEASE}-dpop-verifier"

# Kinds that are not part of the Kubernetes API: validated against hand-written subsets of
# their CRD schemas (tests/deploy/crd_schemas/), never skipped.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
    ("security.istio.io/v1", "AuthorizationPolicy"): "authorizationpolicy-security-v1.json",
}


def helm() -> Any:
    """The helm_python module, or a clear failure when the dev extra is not installed."""
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AssertionError(
            "helm-python-sdk is not installed: run `make install-dev` (pip install -e '.[dev]')"
        ) from exc
    return helm_python


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object and the template that produced it."""

    template: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


@dataclass(frozen=True)
class Rendered:
    """The output of one ``helm template``: raw files, parsed objects and NOTES.txt."""

    files: Mapping[str, str]
    manifests: tuple[Manifest, ...]
    notes: str
    fullname: str = FULLNAME

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [m.doc for m in self.manifests if m.kind == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def maybe(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        return found[0] if found else None

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment", self.fullname)

    @property
    def verifier(self) -> dict[str, Any]:
        """The verifier container of the Deployment."""
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == "verifier")

    @property
    def env(self) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in self.verifier.get("env", [])}

    def template_text(self, suffix: str) -> str:
        return next(text for path, text in self.files.items() if path.endswith(suffix))


def render(
    values: Mapping[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> Rendered:
    """``helm template <release> helm/dpop-verifier -n <namespace>`` with ``values``
    (schema-validated); ``dv`` in ``apps`` by default."""
    h = helm()
    with h.Chart.load(CHART_DIR) as chart:
        files = chart.render(
            dict(values) if values is not None else None,
            name=release,
            namespace=namespace,
            is_install=True,
        )
    notes = ""
    manifests: list[Manifest] = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                manifests.append(Manifest(path, doc))
    # The chart's fullname rule (no overrides): the release name when it holds the chart name.
    fullname = release if "dpop-verifier" in release else f"{release}-dpop-verifier"
    return Rendered(files, tuple(manifests), notes, fullname)


def lint(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``helm lint --strict`` with ``values``."""
    report: dict[str, Any] = helm().lint(
        CHART_DIR,
        dict(values) if values is not None else None,
        strict=True,
        namespace=NAMESPACE,
    )
    return report


def validate_schema(values: Mapping[str, Any]) -> None:
    """values.schema.json check, as ``helm install`` does (raises HelmValuesError)."""
    with helm().Chart.load(CHART_DIR) as chart:
        chart.validate_schema(dict(values))


@cache
def _crd_schema(filename: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CRD_SCHEMA_DIR / filename).read_text(encoding="utf-8"))
    return schema


def validate_object(doc: Mapping[str, Any], kube_version: str) -> None:
    """Validate one object against the Kubernetes API schema of ``kube_version`` (strict:
    unknown fields are errors), or against the CRD subset schema for non-core kinds."""
    import kubernetes_validate

    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        jsonschema.validate(dict(doc), _crd_schema(CRD_SCHEMAS[key]))  # type: ignore[index]
        return
    kubernetes_validate.validate(dict(doc), kube_version, strict=True)


def leaf_paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of every leaf in a values tree (a non-empty dict is not a leaf)."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from leaf_paths(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def default_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text("utf-8"))
    return values


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text("utf-8"))
    return loaded


def schema_node(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The schema of the value at dotted ``path`` (any key of a map), or None when the schema
    has no such value."""
    node: dict[str, Any] = schema
    for key in path.split("."):
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):  # a map: any key
            node = node["additionalProperties"]
        else:
            return None
        if "$ref" in node:
            ref = node["$ref"].rsplit("/", 1)[1]
            node = schema["definitions"][ref]
    return node
