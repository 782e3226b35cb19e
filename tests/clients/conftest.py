"""Running verifiers shared by the client tests (Python, Node, Go, Java) in this package: one over
plaintext, one serving TLS and one requiring client certificates (mTLS), all trusting one test
issuer, with the certificates of one test CA (tests/support/pki.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.pki import TestPki, make_pki
from tests.support.service import ServiceProcess, TestIssuer, running_service


@pytest.fixture(scope="package")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("client-issuer"))


@pytest.fixture(scope="package")
def service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[ServiceProcess]:
    with running_service(tmp_path_factory.mktemp("client-service"), issuer) as svc:
        yield svc


@pytest.fixture(scope="package")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="package")
def tls_service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer, pki: TestPki
) -> Iterator[ServiceProcess]:
    env = {
        "DPOP_TLS_CERT_FILE": str(pki.server_cert_file),
        "DPOP_TLS_KEY_FILE": str(pki.server_key_file),
    }
    with running_service(tmp_path_factory.mktemp("client-tls"), issuer, env=env) as svc:
        yield svc


@pytest.fixture(scope="package")
def mtls_service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer, pki: TestPki
) -> Iterator[ServiceProcess]:
    env = {
        "DPOP_TLS_CERT_FILE": str(pki.server_cert_file),
        "DPOP_TLS_KEY_FILE": str(pki.server_key_file),
        "DPOP_TLS_CLIENT_CA_FILE": str(pki.ca_file),
    }
    with running_service(tmp_path_factory.mktemp("client-mtls"), issuer, env=env) as svc:
        yield svc


def make_clients(target: str, out: Path) -> None:
    """``make <target>`` (clients/clients.mk) into the build directory ``out``."""
    result = subprocess.run(
        ["make", "--no-print-directory", target, f"CLIENT_BUILD_DIR={out}"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": ""},
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"make {target} failed:\n{result.stdout}\n{result.stderr}", pytrace=False)


@pytest.fixture(scope="package")
def java_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make clients-java``: the jar Maven built offline from clients/java/pom.xml, its runtime
    classpath as Maven resolved it, OpenSSL's JNI library under netty's name, verify-example."""
    out = tmp_path_factory.mktemp("java-build")
    make_clients("clients-java", out)
    return out / "java"


@pytest.fixture(scope="package")
def go_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make clients-go``: clients/go vetted and built as a module offline, verify-example."""
    out = tmp_path_factory.mktemp("go-build")
    make_clients("clients-go", out)
    return out / "go"


@pytest.fixture(scope="package")
def dead_address() -> str:
    """A loopback address where nothing listens: every call fails with UNAVAILABLE."""
    return f"127.0.0.1:{free_port()}"
