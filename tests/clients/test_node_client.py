"""The Node client (clients/node) installed as its users install it: ``npm pack`` makes the tarball
and a fresh npm project installs it, with express and panva's ``dpop`` (an independent proof
implementation). tests/clients/apps/node/e2e.mjs then calls verifiers over plaintext, TLS and
mTLS, and serves the Express middleware mounted on a path, in a Router, at the root and behind a
prefix-stripping proxy, and the node:http helper; the README's snippet is run as pasted.

The access tokens are minted here in Python, bound to the thumbprints Node reports (and checked
against Python's RFC 7638 thumbprint of the same JWKs)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.clients import readme
from tests.clients.outcomes import TRANSPORT_FAILURES, allowed, verifiers
from tests.clients.programs import wait_for_port
from tests.support.net import free_port
from tests.support.pki import TestPki
from tests.support.service import AUDIENCE, ISSUER, ServiceProcess, TestIssuer
from verifier.cli.mint import generate_key, make_access_token, make_proof
from verifier.jose.rfc7638 import thumbprint

# Installs and builds happen in package fixtures, inside the first test that needs them.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
APP = Path(__file__).resolve().parent / "apps" / "node"
UNAVAILABLE = 14  # gRPC status code


def test_the_tarball_brings_its_dependencies(node_project: Path) -> None:
    """What `npm install ./clients/node` got wrong: a symlink without the client's dependencies."""
    installed = node_project / "node_modules" / "@dpop-verifier" / "client"
    assert installed.is_dir() and not installed.is_symlink()
    assert (node_project / "node_modules" / "@grpc" / "grpc-js").is_dir()
    assert not (installed / "test").exists(), "the tarball ships only src/ and gen/"


@pytest.fixture(scope="module")
def node_results(
    node_project: Path,
    service: ServiceProcess,
    tls_service: ServiceProcess,
    mtls_service: ServiceProcess,
    dead_address: str,
    issuer: TestIssuer,
    pki: TestPki,
) -> dict[str, Any]:
    process = subprocess.Popen(
        ["node", "e2e.mjs"],
        cwd=node_project,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        keys = json.loads(process.stdout.readline() or "{}")
        assert keys.get("ours"), process.stderr.read() if process.stderr else ""
        tokens = {}
        for name, key in keys.items():
            # Python's RFC 7638 thumbprint of each JWK is the jkt the Node code computed.
            assert thumbprint(key["jwk"]) == key["jkt"], name
            tokens[name] = make_access_token(
                issuer.key, issuer=ISSUER, audience=AUDIENCE, jkt=key["jkt"], subject="node-user"
            )
        given = {
            **verifiers(service, tls_service, mtls_service, dead_address, pki),
            "tokens": tokens,
        }
        stdout, stderr = process.communicate(json.dumps(given) + "\n", timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    results: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    results["keys"] = keys
    return results


def test_valid_proofs_from_our_signer_and_panvas_are_allowed(node_results: dict[str, Any]) -> None:
    valid = node_results["valid"]
    assert allowed(valid) and valid["sub"] == "node-user"
    assert valid["jkt"] == node_results["keys"]["ours"]["jkt"]
    assert allowed(node_results["restoredSigner"])
    assert allowed(node_results["panvaProof"])
    assert node_results["panvaProof"]["jkt"] == node_results["keys"]["panva"]["jkt"]


def test_replays_and_wrong_urls_are_denied(node_results: dict[str, Any]) -> None:
    assert node_results["replay"]["reason"] == "replayed"
    assert node_results["replay"]["status"] == 401 and not node_results["replay"]["allowed"]
    assert node_results["wrongHtu"]["reason"] == "proof_htu_mismatch"


def test_tls_and_mtls(node_results: dict[str, Any]) -> None:
    assert allowed(node_results["tls"])
    assert allowed(node_results["mtls"])


@pytest.mark.parametrize("scenario", TRANSPORT_FAILURES)
def test_a_transport_failure_is_an_error_never_an_answer(
    node_results: dict[str, Any], scenario: str
) -> None:
    assert node_results[scenario] == {"error": "VerifierError", "code": UNAVAILABLE, "attempts": 2}


def test_retries_never_run_past_the_deadline(node_results: dict[str, Any]) -> None:
    deadline = node_results["deadline"]
    assert deadline["error"] == "VerifierError" and 1 < deadline["attempts"] < 10000
    assert deadline["elapsedMs"] < 500 + 1000, deadline  # the margin is a hang guard


def test_express_middleware_on_a_sub_path_in_a_router_and_at_the_root(
    node_results: dict[str, Any],
) -> None:
    mounted = node_results["expressMounted"]
    assert mounted["status"] == 200, mounted
    # Inside a mounted middleware Express strips the mount path from req.url ("/42?page=2");
    # the proof names /orders/42, so only req.originalUrl gives an allow here.
    assert mounted["body"]["sub"] == "node-user"
    assert mounted["body"]["originalUrl"] == "/orders/42?page=2"
    assert node_results["expressRouter"]["status"] == 200
    assert node_results["expressRoot"]["status"] == 200
    stripped = node_results["expressMountedStripped"]
    assert (stripped["status"], stripped["body"]) == (401, {"error": "invalid_dpop_proof"})


def test_express_middleware_behind_a_proxy(node_results: dict[str, Any]) -> None:
    assert node_results["expressBehindProxy"]["status"] == 200
    assert node_results["expressBehindProxyInternalUrl"]["status"] == 401
    assert node_results["badPublicOrigin"] == "TypeError"


def test_node_http_middleware(node_results: dict[str, Any]) -> None:
    assert node_results["nodeHttp"] == {
        "status": 200,
        "wwwAuthenticate": "",
        "body": {"sub": "node-user"},
    }
    replay = node_results["nodeHttpReplay"]
    assert replay["status"] == 401 and replay["body"] == {"error": "invalid_dpop_proof"}
    assert 'error="invalid_dpop_proof"' in replay["wwwAuthenticate"]
    anonymous = node_results["nodeHttpNoCredentials"]
    assert anonymous["status"] == 401 and anonymous["wwwAuthenticate"].startswith("DPoP algs=")


def test_the_middleware_answers_503_when_the_verifier_is_unreachable(
    node_results: dict[str, Any],
) -> None:
    down = node_results["expressVerifierDown"]
    assert (down["status"], down["body"]) == (503, {"error": "temporarily_unavailable"})


def test_typescript_declarations_type_check() -> None:
    """clients/node/test/types.ts uses the package as a TypeScript user would (tsc --noEmit)."""
    tsc = NODE_DIR / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "run make install-test-deps (npm ci in clients/node)"
    result = subprocess.run(
        [str(tsc), "-p", str(NODE_DIR)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the README's snippet, run with node in the test project -------------------------------------


@contextmanager
def running_the_readme_snippet(project: Path, address: str, ca_file: Path) -> Iterator[str]:
    port = free_port()
    code = readme.paste(
        readme.snippet("js"),
        {
            '"verifier.internal:50051"': json.dumps(address),
            '"ca.pem"': json.dumps(str(ca_file)),
            "8080": str(port),
        },
    )
    (project / "readme.mjs").write_text(code, encoding="utf-8")
    process = subprocess.Popen(
        ["node", "readme.mjs"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


def http_get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_readme_snippet_over_tls(
    node_project: Path, tls_service: ServiceProcess, pki: TestPki, issuer: TestIssuer
) -> None:
    key = generate_key("ES256")
    token = issuer.token(key, subject="reader")
    proof = make_proof(key, "GET", "https://api.example.com/api/orders", access_token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    with running_the_readme_snippet(node_project, tls_service.address, pki.ca_file) as base:
        assert http_get(f"{base}/api/orders", headers) == (200, {"hello": "reader"})
        assert http_get(f"{base}/api/orders", headers) == (401, {"error": "invalid_dpop_proof"})


def test_the_readme_snippet_answers_503_without_a_verifier(
    node_project: Path, dead_address: str, pki: TestPki
) -> None:
    with running_the_readme_snippet(node_project, dead_address, pki.ca_file) as base:
        assert http_get(f"{base}/api/orders", {}) == (503, {"error": "temporarily_unavailable"})
