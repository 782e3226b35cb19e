"""Running verifiers shared by the client tests (Python, Node, Go, Java) in this package: one over
plaintext, one serving TLS and one requiring client certificates (mTLS), all trusting one test
issuer, with the certificates of one test CA (tests/support/pki.py)."""

from __future__ import annotations

from collections.abc import Iterator

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


@pytest.fixture(scope="package")
def dead_address() -> str:
    """A loopback address where nothing listens: every call fails with UNAVAILABLE."""
    return f"127.0.0.1:{free_port()}"
