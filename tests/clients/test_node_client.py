"""Cross-language end to end: the Node client (clients/node) against the real service, with keys
from Node's WebCrypto and proofs minted by panva's ``dpop`` npm package, and the access token
minted here in Python, bound to the thumbprint Node reports.

Needs node and ``npm ci`` in clients/node (``make install-test-deps``); fails if either is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.net import free_port
from tests.support.service import AUDIENCE, ISSUER, ServiceProcess, TestIssuer
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.dpop.jwk import thumbprint
from verifier.mint import make_access_token

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
UNAVAILABLE = 14  # gRPC status code


@pytest.fixture(scope="module")
def node_results(service: ServiceProcess, issuer: TestIssuer) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "dpop").is_dir():
        pytest.fail("node or clients/node/node_modules missing: run make install-test-deps")
    process = subprocess.Popen(
        [node, "test/cross-language.mjs"],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        key = json.loads(process.stdout.readline() or "{}")
        assert key.get("jkt"), process.stderr.read() if process.stderr else ""
        # Python's RFC 7638 thumbprint of Node's public JWK is the jkt panva's library computed.
        assert thumbprint(key["jwk"]) == key["jkt"]
        token = make_access_token(
            issuer.key, issuer=ISSUER, audience=AUDIENCE, jkt=key["jkt"], subject="node-user"
        )
        request = {"verifier": service.address, "token": token, "deadAddress": dead_address()}
        stdout, stderr = process.communicate(json.dumps(request) + "\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    results: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    results["key"] = key
    return results


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"


def test_valid_request_is_allowed(node_results: dict[str, Any]) -> None:
    valid = node_results["valid"]
    assert valid["allowed"] and valid["decision"] == pb.DECISION_ALLOW, valid
    assert (valid["reason"], valid["httpStatus"]) == ("ok", 200)
    assert valid["jkt"] == node_results["key"]["jkt"] and valid["sub"] == "node-user"


def test_replayed_proof_is_denied(node_results: dict[str, Any]) -> None:
    replay = node_results["replay"]
    assert not replay["allowed"] and replay["decision"] == pb.DECISION_DENY
    assert (replay["reason"], replay["httpStatus"]) == ("replayed", 401)


def test_wrong_htu_is_denied(node_results: dict[str, Any]) -> None:
    wrong = node_results["wrongHtu"]
    assert not wrong["allowed"] and wrong["reason"] == "proof_htu_mismatch"
    assert 'error="invalid_dpop_proof"' in wrong["wwwAuthenticate"]


def test_node_http_middleware(node_results: dict[str, Any]) -> None:
    assert node_results["httpValid"]["status"] == 200
    assert node_results["httpValid"]["body"]["sub"] == "node-user"
    replay = node_results["httpReplay"]
    assert replay["status"] == 401 and replay["body"] == {"error": "invalid_dpop_proof"}
    assert 'error="invalid_dpop_proof"' in replay["wwwAuthenticate"]
    anonymous = node_results["httpNoCredentials"]
    assert anonymous["status"] == 401 and anonymous["wwwAuthenticate"].startswith("DPoP algs=")


def test_unreachable_verifier_is_retried_then_fails_closed(node_results: dict[str, Any]) -> None:
    assert node_results["unreachable"] == {
        "error": "VerifierError",
        "code": UNAVAILABLE,
        "attempts": 2,
    }
    assert node_results["httpVerifierDown"]["status"] == 503


def test_typescript_declarations_type_check() -> None:
    """clients/node/test/types.ts uses the package as a TypeScript user would (tsc --noEmit)."""
    tsc = NODE_DIR / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "run make install-test-deps (npm ci in clients/node)"
    result = subprocess.run(
        [str(tsc), "-p", str(NODE_DIR)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
