"""The Python client installed as its users install it: ``pip install ./clients/python`` (the
README's command) into a fresh virtualenv that has never seen the server package, then used
against running verifiers over plaintext, TLS and mTLS, and the README's snippet served by a
real WSGI server in that virtualenv."""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.clients import readme
from tests.clients.installs import SIGNER_INSTALL, FreshVenv
from tests.support.pki import TestPki
from tests.support.service import ServiceProcess, TestIssuer, dpop_request
from verifier.cli.mint import generate_key, make_proof

# Installs and builds happen in package fixtures, inside the first test that needs them.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "apps" / "python"
# Everything the fresh virtualenv may hold: the client, its two dependencies, what grpcio
# needs, and what `python -m venv` puts there itself.
ALLOWED = {"dpop-verifier-client", "grpcio", "protobuf", "typing-extensions", "pip", "setuptools"}


@pytest.fixture(scope="package")
def client_python(fresh_venv: FreshVenv) -> Path:
    return fresh_venv.python


def run(python: Path, *arguments: str, stdin: str = "") -> str:
    result = subprocess.run(
        [str(python), "-I", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=APP,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_package_installs_alone(fresh_venv: FreshVenv) -> None:
    assert "dpop-verifier-client" in fresh_venv.packages
    unexpected = fresh_venv.packages - ALLOWED
    assert not unexpected, f"unexpected packages: {sorted(unexpected)}"
    assert fresh_venv.found == "[None, None, None]"  # no server, nothing of an extra


def test_the_signer_without_its_extra_names_the_extra(fresh_venv: FreshVenv) -> None:
    assert "pip install 'dpop-verifier-client[signer]'" in fresh_venv.without_signer


def test_the_signer_extra_installs_and_signs_proofs_the_verifier_accepts(
    fresh_venv: FreshVenv, service: ServiceProcess, issuer: TestIssuer
) -> None:
    # The install (recorded before) was followed by docs/clients.md's command for the extra.
    assert SIGNER_INSTALL in (ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    key = generate_key("ES256")  # the server's helpers make the key; the client's signer signs
    sign = (
        "import json, sys; from dpop_verifier_client.proof import ProofSigner; "
        "given = json.load(sys.stdin); signer = ProofSigner.from_jwk(given['jwk']); "
        "print(json.dumps(signer.headers('GET', given['url'], given['token'])))"
    )
    token = issuer.token(key, subject="signed")
    given = {"jwk": key.private_jwk(), "url": "https://api.test/orders?x=1", "token": token}
    headers = json.loads(run(fresh_venv.python, "-c", sign, stdin=json.dumps(given)))
    answer = service.verify(
        method="GET",
        target_uri="https://api.test/orders?x=1",
        authorization=[headers["Authorization"]],
        dpop=[headers["DPoP"]],
    )
    assert (answer.reason_code, answer.jkt, answer.claims.sub) == ("ok", key.jkt, "signed")


@pytest.fixture(scope="module")
def outcomes(
    client_python: Path,
    service: ServiceProcess,
    tls_service: ServiceProcess,
    mtls_service: ServiceProcess,
    dead_address: str,
    issuer: TestIssuer,
    pki: TestPki,
) -> dict[str, Any]:
    key = generate_key("ES256")
    token = issuer.token(key, subject="installed")
    given = {
        "plain": service.address,
        "tls": tls_service.address,
        "mtls": mtls_service.address,
        "dead": dead_address,
        "ca": str(pki.ca_file),
        "client_cert": str(pki.client_cert_file),
        "client_key": str(pki.client_key_file),
        "requests": {name: dpop_request(key, token) for name in ("first", "tls", "mtls", "spare")},
    }
    return dict(json.loads(run(client_python, "scenarios.py", stdin=json.dumps(given))))


def test_allow_and_deny_over_plaintext(outcomes: dict[str, Any]) -> None:
    assert outcomes["plaintext"] == {"allowed": True, "reason": "ok", "status": 200}
    assert outcomes["plaintext_replay"] == {"allowed": False, "reason": "replayed", "status": 401}


def test_tls_and_mtls_with_the_server_name_override(outcomes: dict[str, Any]) -> None:
    assert outcomes["tls"] == {"allowed": True, "reason": "ok", "status": 200}
    assert outcomes["mtls"] == {"allowed": True, "reason": "ok", "status": 200}


@pytest.mark.parametrize(
    "scenario",
    [
        "tls_wrong_server_name",
        "tls_untrusted",
        "plaintext_to_tls",
        "mtls_without_certificate",
        "unreachable",
    ],
)
def test_a_transport_failure_is_an_error_never_an_answer(
    outcomes: dict[str, Any], scenario: str
) -> None:
    """No allow, and no deny either: the caller learns that there was no answer."""
    assert outcomes[scenario] == {"error": "VerifierError", "code": "UNAVAILABLE", "attempts": 3}


# --- the README's snippet, served by wsgiref in the fresh virtualenv ---------------------------


@contextmanager
def serving_the_readme_snippet(python: Path, address: str, ca_file: Path) -> Iterator[str]:
    code = readme.paste(
        readme.snippet("python"),
        {"verifier.internal:50051": address, '"ca.pem"': repr(str(ca_file))},
    )
    with tempfile.TemporaryDirectory() as directory:
        app_file = Path(directory) / "app.py"
        app_file.write_text(code, encoding="utf-8")
        server = subprocess.Popen(
            [str(python), "-I", str(APP / "serve_wsgi.py"), str(app_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stderr is not None
            line = server.stdout.readline()
            assert line.startswith("listening on "), line + server.stderr.read()
            yield f"http://127.0.0.1:{line.split()[-1]}"
        finally:
            server.kill()
            server.wait()


def http_get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def readme_headers(issuer: TestIssuer) -> dict[str, str]:
    key = generate_key("ES256")
    token = issuer.token(key, subject="reader")
    # The snippet's public origin, not the address the server listens on, is in the proof.
    proof = make_proof(key, "GET", "https://api.example.com/orders", access_token=token)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def test_the_readme_snippet_allows_then_denies_over_tls(
    client_python: Path, tls_service: ServiceProcess, pki: TestPki, issuer: TestIssuer
) -> None:
    headers = readme_headers(issuer)
    with serving_the_readme_snippet(client_python, tls_service.address, pki.ca_file) as app:
        assert http_get(f"{app}/orders?page=2", headers)[::2] == (200, b"hello reader")
        status, reply_headers, body = http_get(f"{app}/orders", headers)
    assert (status, json.loads(body)) == (401, {"error": "invalid_dpop_proof"})
    assert 'error="invalid_dpop_proof"' in reply_headers["WWW-Authenticate"]


def test_the_readme_snippet_answers_503_without_a_verifier(
    client_python: Path, dead_address: str, pki: TestPki, issuer: TestIssuer
) -> None:
    with serving_the_readme_snippet(client_python, dead_address, pki.ca_file) as app:
        status, _, body = http_get(f"{app}/orders", readme_headers(issuer))
    assert (status, json.loads(body)) == (503, {"error": "temporarily_unavailable"})
