"""The Java client (clients/java) built from its Maven build file, offline against Debian's jars
(``make clients-java``: ``mvn -Pdebian package``; TLS through OpenSSL via netty-tcnative), and used
the way an application does: tests/clients/apps/java/E2E.java calls verifiers over plaintext,
TLS and mTLS, and serves the Servlet filter in embedded Tomcat under a context path, at the root,
behind a prefix-stripping proxy, and as the README's snippet (pasted into it) registers it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.clients import readme
from tests.clients.outcomes import TRANSPORT_FAILURES, allowed, verifiers
from tests.support.pki import TestPki
from tests.support.service import AUDIENCE, ISSUER, ServiceProcess, TestIssuer
from verifier.cli.mint import make_access_token
from verifier.jose.rfc7638 import thumbprint

# Installs and builds happen in package fixtures, inside the first test that needs them.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "apps" / "java"
# Embedded Tomcat 10.1 and the jakarta.annotation classes it loads filters with.
TOMCAT = (
    Path("/usr/share/java/tomcat10-embed-core.jar"),
    Path("/usr/share/java/jakarta-annotation-api.jar"),
)
SNIPPET_MARK = "    // README SNIPPET\n"
# What the README tells Maven Central users; here the same pom.xml builds offline (-Pdebian).
INSTALL = readme.install_command("mvn -f clients/java/pom.xml install")


def classpath(build: Path) -> str:
    jar = next((build / "target").glob("dpop-verifier-client-*.jar"))
    # Tomcat first: its Servlet 6 classes, not the Servlet 5 API jar the client compiles against.
    return ":".join([*map(str, TOMCAT), str(jar), (build / "classpath").read_text().strip()])


@pytest.fixture(scope="package")
def java_app(
    java_build: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tls_service: ServiceProcess,
    pki: TestPki,
) -> Path:
    """E2E.java with the README snippet pasted in, compiled against the built client."""
    missing = [str(jar) for jar in TOMCAT if not jar.exists()]
    if missing:
        pytest.fail(f"{missing} missing: run make install-test-deps", pytrace=False)
    snippet = readme.paste(
        readme.snippet("java"),
        {
            '"verifier.internal:50051"': json.dumps(tls_service.address),
            '"ca.pem"': json.dumps(str(pki.ca_file)),
        },
    )
    source = (APP / "E2E.java").read_text(encoding="utf-8")
    assert SNIPPET_MARK in source
    indented = "".join(f"    {line}\n" if line else "\n" for line in snippet.splitlines())
    out = tmp_path_factory.mktemp("java-app")
    (out / "E2E.java").write_text(source.replace(SNIPPET_MARK, indented), encoding="utf-8")
    # -path: a Debian jar's manifest names a Class-Path entry that is not installed.
    javac = ["javac", "-Xlint:all,-serial,-path", "-Werror", "--release", "17", "-d", str(out)]
    result = subprocess.run(
        [*javac, "-cp", classpath(java_build), str(out / "E2E.java")],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"javac E2E.java failed:\n{result.stdout}{result.stderr}", pytrace=False)
    return out


@pytest.fixture(scope="module")
def java_results(
    java_build: Path,
    java_app: Path,
    service: ServiceProcess,
    tls_service: ServiceProcess,
    mtls_service: ServiceProcess,
    dead_address: str,
    issuer: TestIssuer,
    pki: TestPki,
) -> dict[str, Any]:
    command = ["java", f"-Djava.library.path={java_build / 'native'}"]
    command += ["-cp", f"{java_app}:{classpath(java_build)}", "E2E"]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        key = json.loads(process.stdout.readline() or "{}")
        assert key.get("jkt"), process.stderr.read() if process.stderr else ""
        # Python's RFC 7638 thumbprint of the Java signer's JWK is the jkt Java computed.
        assert thumbprint(key["jwk"]) == key["jkt"]
        token = make_access_token(
            issuer.key, issuer=ISSUER, audience=AUDIENCE, jkt=key["jkt"], subject="java-user"
        )
        given = {
            **verifiers(service, tls_service, mtls_service, dead_address, pki),
            "token": token,
        }
        properties = "".join(f"{name}={value}\n" for name, value in given.items())
        stdout, stderr = process.communicate(properties, timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    try:
        results: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except ValueError:
        pytest.fail(f"not JSON:\n{stdout}\n{stderr}", pytrace=False)
    results["key"] = key
    return results


def test_valid_requests_are_allowed_and_replays_denied(java_results: dict[str, Any]) -> None:
    valid = java_results["valid"]
    assert allowed(valid) and valid["sub"] == "java-user"
    assert valid["jkt"] == java_results["key"]["jkt"]
    assert allowed(java_results["restoredSigner"])
    replay = java_results["replay"]
    assert (replay["allowed"], replay["reason"], replay["status"]) == (False, "replayed", 401)
    assert java_results["wrongHtu"]["reason"] == "proof_htu_mismatch"


def test_tls_with_the_server_name_override_and_mtls(java_results: dict[str, Any]) -> None:
    assert allowed(java_results["tls"])
    assert allowed(java_results["mtls"])
    assert java_results["noTransportChosen"] is True


@pytest.mark.parametrize("scenario", TRANSPORT_FAILURES)
def test_a_transport_failure_is_an_error_never_an_answer(
    java_results: dict[str, Any], scenario: str
) -> None:
    outcome = java_results[scenario]
    assert outcome == {"error": "VerifierException", "code": "UNAVAILABLE", "attempts": 2}


def test_retries_never_run_past_the_deadline(java_results: dict[str, Any]) -> None:
    outcome = java_results["deadline"]
    assert outcome["error"] == "VerifierException" and 1 < outcome["attempts"] < 10000, outcome
    assert outcome["elapsedMs"] < 500 + 1000, outcome  # the margin is a hang guard


def test_filter_under_a_context_path_and_at_the_root(java_results: dict[str, Any]) -> None:
    mounted = java_results["contextPath"]
    assert mounted["status"] == 200, mounted
    assert mounted["body"] == {"sub": "java-user", "pathInfo": "/42"}
    without = java_results["contextPathProofWithoutIt"]
    assert (without["status"], without["body"]) == (401, {"error": "invalid_dpop_proof"})
    assert 'error="invalid_dpop_proof"' in without["wwwAuthenticate"]
    assert java_results["root"]["status"] == 200


def test_filter_behind_a_proxy(java_results: dict[str, Any]) -> None:
    assert java_results["behindProxy"]["status"] == 200
    assert java_results["behindProxyInternalUrl"]["status"] == 401
    assert java_results["badPublicOrigin"] is True


def test_the_filter_answers_503_when_the_verifier_is_unreachable(
    java_results: dict[str, Any],
) -> None:
    down = java_results["verifierDown"]
    assert (down["status"], down["body"]) == (503, {"error": "temporarily_unavailable"})


def test_the_readme_snippet_over_tls(java_results: dict[str, Any]) -> None:
    readme_answer = java_results["readme"]
    assert readme_answer["status"] == 200 and readme_answer["body"]["sub"] == "java-user"
    assert java_results["readmeInternalUrl"]["status"] == 401


def test_the_central_profile_names_what_the_offline_build_swapped() -> None:
    """The offline build proves the shared dependency list complete; the profiles differ only in
    the artifacts Debian names differently, each paired with its Maven Central counterpart (the
    old documented list lacked javax.annotation, and the stubs' @Generated failed to compile)."""
    pom = ElementTree.parse(ROOT / "clients" / "java" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}

    def dependencies(parent: ElementTree.Element) -> set[tuple[str, str]]:
        found = parent.findall("m:dependencies/m:dependency", ns)
        return {
            (d.findtext("m:artifactId", "", ns), d.findtext("m:scope", "compile", ns))
            for d in found
        }

    profiles = {p.findtext("m:id", "", ns): p for p in pom.findall("m:profiles/m:profile", ns)}
    assert dependencies(pom) == {
        ("grpc-api", "compile"),
        ("grpc-stub", "compile"),
        ("grpc-protobuf", "compile"),
        ("protobuf-java", "compile"),
        ("guava", "compile"),
        ("jakarta.servlet-api", "provided"),
    }
    assert dependencies(profiles["central"]) == {
        ("javax.annotation-api", "provided"),  # for geronimo-annotation_1.3_spec
        ("grpc-netty-shaded", "runtime"),  # for grpc-netty and netty-tcnative
    }
    assert dependencies(profiles["debian"]) == {
        ("geronimo-annotation_1.3_spec", "provided"),
        ("grpc-netty", "runtime"),
        ("netty-tcnative", "runtime"),
    }
    activation = profiles["central"].findtext("m:activation/m:activeByDefault", "", ns)
    assert activation == "true"
