"""The Go and Java example programs (``make clients-go``, ``make clients-java``: both built from
their module and build files offline) get real answers from running verifiers: allow for a valid
request, ``replayed`` when the same proof comes again, the same over TLS with a server-name
override, and exit status 2, never 0 or 1, when there is no answer at all."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.pki import TestPki
from tests.support.service import ServiceProcess, TestIssuer
from verifier.cli.mint import generate_key, make_proof

# Installs and builds happen in package fixtures, inside the first test that needs them.
pytestmark = pytest.mark.timeout(600)

URL = "https://api.test/orders"


def ask(program: Path, address: str, token: str, proof: str, *tls: str) -> tuple[int, str]:
    arguments = ["--addr", address, "--method", "GET", "--url", URL, "--token", token]
    arguments += ["--proof", proof, *tls]
    go_style = [a.replace("--", "-", 1) if a.startswith("--") else a for a in arguments]
    result = subprocess.run(
        [str(program), *(go_style if program.parent.name == "go" else arguments)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(params=["go", "java"])
def example(request: pytest.FixtureRequest) -> tuple[str, Path]:
    build: Path = request.getfixturevalue(f"{request.param}_build")
    return request.param, build / "verify-example"


def test_allow_then_replayed(
    example: tuple[str, Path], service: ServiceProcess, issuer: TestIssuer
) -> None:
    language, program = example
    client = generate_key("ES256")
    token = issuer.token(client, subject=f"{language}-user")
    proof = make_proof(client, "GET", URL, access_token=token)

    status, output = ask(program, service.address, token, proof)
    assert status == 0, output
    assert output.splitlines()[0] == "DECISION_ALLOW ok 200"
    assert f"sub: {language}-user jkt: {client.jkt}" in output

    status, output = ask(program, service.address, token, proof)
    assert status == 1, output
    assert output.splitlines()[0] == "DECISION_DENY replayed 401"
    assert 'WWW-Authenticate: DPoP error="invalid_dpop_proof"' in output


def test_over_tls_with_a_server_name_override(
    example: tuple[str, Path], tls_service: ServiceProcess, issuer: TestIssuer, pki: TestPki
) -> None:
    _, program = example
    client = generate_key("ES256")
    token = issuer.token(client)
    proof = make_proof(client, "GET", URL, access_token=token)
    tls = ("--ca", str(pki.ca_file), "--server-name", "localhost")
    status, output = ask(program, tls_service.address, token, proof, *tls)
    assert (status, output.splitlines()[0]) == (0, "DECISION_ALLOW ok 200"), output


@pytest.mark.parametrize("failure", ["no verifier", "wrong server name"])
def test_no_answer_exits_2(
    example: tuple[str, Path],
    failure: str,
    tls_service: ServiceProcess,
    dead_address: str,
    pki: TestPki,
) -> None:
    _, program = example
    address, tls = {
        "no verifier": (dead_address, ()),
        "wrong server name": (
            tls_service.address,
            ("--ca", str(pki.ca_file), "--server-name", "x.test"),
        ),
    }[failure]
    status, output = ask(program, address, "token", "proof", *tls)
    assert status == 2, output
    assert "UNAVAILABLE" in output.upper() and "DECISION_" not in output
