"""The Go and Java stubs compile with Debian's toolchains and gRPC libraries (``make clients-go``,
``make clients-java``), and each example program gets real answers from the running service:
allow for a valid request, ``replayed`` when the same proof comes again."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.service import ServiceProcess, TestIssuer
from verifier.mint import generate_key, make_proof

ROOT = Path(__file__).resolve().parents[2]
URL = "https://api.test/orders"


def build(target: str, out: Path) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", target, f"CLIENT_BUILD_DIR={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": ""},
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"make {target} failed:\n{result.stdout}\n{result.stderr}", pytrace=False)


def ask(program: Path, service: ServiceProcess, token: str, proof: str) -> tuple[int, str]:
    arguments = ["--addr", service.address, "--method", "GET", "--url", URL]
    arguments += ["--token", token, "--proof", proof]
    go_style = [a.replace("--", "-", 1) if a.startswith("--") else a for a in arguments]
    result = subprocess.run(
        [str(program), *(go_style if program.parent.name == "go" else arguments)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("language", ["go", "java"])
def test_example_compiles_and_calls_the_service(
    language: str, tmp_path: Path, service: ServiceProcess, issuer: TestIssuer
) -> None:
    build(f"clients-{language}", tmp_path)
    program = tmp_path / language / "verify-example"
    client = generate_key("ES256")
    token = issuer.token(client, subject=f"{language}-user")
    proof = make_proof(client, "GET", URL, access_token=token)

    status, output = ask(program, service, token, proof)
    assert status == 0, output
    assert output.splitlines()[0] == "DECISION_ALLOW ok 200"
    assert f"sub: {language}-user jkt: {client.jkt}" in output

    status, output = ask(program, service, token, proof)
    assert status == 1, output
    assert output.splitlines()[0] == "DECISION_DENY replayed 401"
    assert 'WWW-Authenticate: DPoP error="invalid_dpop_proof"' in output
