"""The Go client module (clients/go) used as a dependency of an application module, the way
``go get`` makes it one: tests/clients/apps/go requires the client module, a vendor/ tree made
from this repository's module and Debian's gRPC-Go sources stands in for the download (the Go
proxy is unreachable here; clients/offline/go_vendor.py), and the application is built in
module mode. It then calls verifiers over plaintext, TLS and mTLS and serves the net/http
middleware under http.StripPrefix, at the root and behind a prefix-stripping proxy. The README's
snippet is built into the same module and run as pasted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.clients import readme
from tests.clients.installs import run
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
APP = Path(__file__).resolve().parent / "apps" / "go"
CLIENT_MODULE = "github.com/dpop-verifier/dpop-verifier/clients/go"
GET = readme.install_command(f"go get {CLIENT_MODULE}@latest")


def go_env(home: Path) -> dict[str, str]:
    cache = os.environ.get("GOCACHE") or str(Path(os.environ.get("HOME", home)) / ".cache/go-build")
    return {
        **os.environ,
        "GO111MODULE": "on",
        "GOFLAGS": "-mod=vendor -trimpath",
        "GOPROXY": "off",
        "GOSUMDB": "off",
        "GOCACHE": cache,
    }


@pytest.fixture(scope="package")
def go_programs(
    installs: Any,  # first: the builds start, then the verifiers start while they run
    tls_service: ServiceProcess,
    pki: TestPki,
    go_build: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The test application and the README snippet, built as one module once ``make
    clients-go`` has filled the build cache with the same packages (-trimpath keeps the cache
    keys free of directory names)."""
    work = tmp_path_factory.mktemp("go-app")
    module = work / "app"
    shutil.copytree(APP, module)
    port = free_port()
    snippet = readme.paste(
        readme.snippet("go"),
        {
            '"verifier.internal:50051"': json.dumps(tls_service.address),
            '"ca.pem"': json.dumps(str(pki.ca_file)),
            '":8080"': json.dumps(f"127.0.0.1:{port}"),
        },
    )
    (module / "readme").mkdir()
    (module / "readme" / "main.go").write_text(snippet, encoding="utf-8")
    vendor = [sys.executable, str(ROOT / "clients" / "offline" / "go_vendor.py"), str(module)]
    run([*vendor, "--local", f"{CLIENT_MODULE}={ROOT / 'clients' / 'go'}"], module)
    env = go_env(work)
    run(["go", "build", "-o", str(work / "e2e"), "."], module, env)
    run(["go", "build", "-o", str(work / "readme-app"), "./readme"], module, env)
    return {"e2e": work / "e2e", "readme": work / "readme-app", "readme_port": port}


@pytest.fixture(scope="module")
def go_results(
    go_programs: dict[str, Any],
    service: ServiceProcess,
    tls_service: ServiceProcess,
    mtls_service: ServiceProcess,
    dead_address: str,
    issuer: TestIssuer,
    pki: TestPki,
) -> dict[str, Any]:
    process = subprocess.Popen(
        [str(go_programs["e2e"])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        key = json.loads(process.stdout.readline() or "{}")
        assert key.get("jkt"), process.stderr.read() if process.stderr else ""
        # Python's RFC 7638 thumbprint of the Go signer's JWK is the jkt Go computed.
        assert thumbprint(key["jwk"]) == key["jkt"]
        token = make_access_token(
            issuer.key, issuer=ISSUER, audience=AUDIENCE, jkt=key["jkt"], subject="go-user"
        )
        given = {
            **verifiers(service, tls_service, mtls_service, dead_address, pki),
            "token": token,
        }
        stdout, stderr = process.communicate(json.dumps(given) + "\n", timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    results: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    results["key"] = key
    return results


def test_valid_requests_are_allowed_and_replays_denied(go_results: dict[str, Any]) -> None:
    valid = go_results["valid"]
    assert allowed(valid) and valid["sub"] == "go-user" and valid["jkt"] == go_results["key"]["jkt"]
    assert allowed(go_results["restoredSigner"])
    replay = go_results["replay"]
    assert (replay["allowed"], replay["reason"], replay["status"]) == (False, "replayed", 401)
    assert go_results["wrongHtu"]["reason"] == "proof_htu_mismatch"


def test_tls_with_the_server_name_override_and_mtls(go_results: dict[str, Any]) -> None:
    assert allowed(go_results["tls"])
    assert allowed(go_results["mtls"])
    assert go_results["noTransportChosen"] is True


@pytest.mark.parametrize("scenario", TRANSPORT_FAILURES)
def test_a_transport_failure_is_an_error_never_an_answer(
    go_results: dict[str, Any], scenario: str
) -> None:
    assert go_results[scenario] == {"error": "VerifierError", "code": "Unavailable", "attempts": 2}


def test_retries_never_run_past_the_deadline(go_results: dict[str, Any]) -> None:
    for name, deadline_ms in (("deadline", 500), ("callerDeadline", 200)):
        outcome = go_results[name]
        assert outcome["error"] == "VerifierError" and 1 < outcome["attempts"] < 10000, outcome
        assert outcome["elapsedMs"] < deadline_ms + 1000, outcome  # the margin is a hang guard


def test_middleware_under_strip_prefix_and_at_the_root(go_results: dict[str, Any]) -> None:
    mounted = go_results["stripPrefix"]
    # http.StripPrefix rewrote the path the handler sees; the proof names the client's URL.
    assert mounted["status"] == 200 and mounted["body"] == {"sub": "go-user", "path": "/orders"}
    stripped = go_results["stripPrefixProofForStrippedPath"]
    assert (stripped["status"], stripped["body"]) == (401, {"error": "invalid_dpop_proof"})
    assert 'error="invalid_dpop_proof"' in stripped["wwwAuthenticate"]
    assert go_results["root"]["status"] == 200


def test_middleware_behind_a_proxy(go_results: dict[str, Any]) -> None:
    assert go_results["behindProxy"]["status"] == 200
    assert go_results["behindProxyInternalUrl"]["status"] == 401
    assert go_results["badPublicOrigin"] is True


def test_the_middleware_answers_503_when_the_verifier_is_unreachable(
    go_results: dict[str, Any],
) -> None:
    down = go_results["verifierDown"]
    assert (down["status"], down["body"]) == (503, {"error": "temporarily_unavailable"})


def test_the_readme_snippet_over_tls(go_programs: dict[str, Any], issuer: TestIssuer) -> None:
    port = go_programs["readme_port"]
    process = subprocess.Popen(
        [str(go_programs["readme"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process)
        key = generate_key("ES256")
        token = issuer.token(key, subject="reader")
        proof = make_proof(key, "GET", "https://api.example.com/orders", access_token=token)
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        assert http_get(f"http://127.0.0.1:{port}/orders", headers) == (200, "hello reader\n")
        status, body = http_get(f"http://127.0.0.1:{port}/orders", headers)
        assert (status, json.loads(body)) == (401, {"error": "invalid_dpop_proof"})
    finally:
        process.kill()
        process.wait()


def http_get(url: str, headers: dict[str, str]) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
