"""The installed environment: the OTLP exporters and the Envoy ext_authz stubs both work.

``xds-protos`` (and similar packages) ship older copies of ``opentelemetry-proto``'s modules
and break the OTLP exporter's import (``cannot import name 'InstrumentationScope'``) when
installed after it. These tests check the files on disk against opentelemetry-proto's own RECORD
and import everything in a fresh interpreter, exactly as the service would.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_IMPORT_BOTH = """
import sys
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as G
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as H
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
with provider.get_tracer("install-check", "1").start_as_current_span("span"):
    pass
request = encode_spans(exporter.get_finished_spans())
scope = request.resource_spans[0].scope_spans[0].scope
assert isinstance(scope, InstrumentationScope) and scope.name == "install-check"
assert request.SerializeToString()

if "--envoy" in sys.argv:  # the Envoy ext_authz stubs the Check servicer uses, same process
    from verifier._generated.envoy.service.auth.v3 import external_auth_pb2
    check = external_auth_pb2.CheckRequest()
    check.attributes.request.http.headers["traceparent"] = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    assert external_auth_pb2.CheckRequest.FromString(check.SerializeToString()) == check

if "--xds" in sys.argv:  # xds-protos' own Envoy modules, when the project depends on it
    from envoy.service.auth.v3 import external_auth_pb2 as xds_external_auth  # noqa: F401
print("ok")
"""


def _declares_xds_protos() -> bool:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return any(r.lower().replace("_", "-").startswith("xds-protos") for r in requirements)


def test_opentelemetry_proto_files_are_its_own() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "repair_otel_proto.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_otlp_exporters_and_envoy_stubs_import_and_work_together() -> None:
    args = [sys.executable, "-c", _IMPORT_BOTH]
    if (ROOT / "verifier/_generated/envoy/service/auth/v3/external_auth_pb2.py").is_file():
        args.append("--envoy")
    if _declares_xds_protos():
        args.append("--xds")
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
