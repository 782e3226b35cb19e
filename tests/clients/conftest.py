"""What the client tests (Python, Node, Go, Java) in this package share: running verifiers (one
over plaintext, one serving TLS, one requiring client certificates) trusting one test issuer,
with the certificates of one test CA (tests/support/pki.py); and the clients, installed and
built once, all four at the same time in the background (tests/clients/installs.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.clients.installs import (
    FreshVenv,
    install_node_client,
    install_python_client,
    make_clients,
)
from tests.support.net import free_port
from tests.support.pki import TestPki, make_pki
from tests.support.service import ServiceProcess, TestIssuer, running_service


@pytest.fixture(scope="package")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("client-issuer"))


@pytest.fixture(scope="package")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="package")
def verifiers(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer, pki: TestPki
) -> Iterator[dict[str, ServiceProcess]]:
    """Three verifiers, started at the same time: plaintext, TLS, and TLS requiring a client
    certificate signed by the test CA (mTLS)."""
    tls = {
        "DPOP_TLS_CERT_FILE": str(pki.server_cert_file),
        "DPOP_TLS_KEY_FILE": str(pki.server_key_file),
    }
    envs = {"plain": {}, "tls": tls, "mtls": {**tls, "DPOP_TLS_CLIENT_CA_FILE": str(pki.ca_file)}}
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=len(envs)) as pool:
        started = {
            name: pool.submit(
                stack.enter_context,
                running_service(tmp_path_factory.mktemp(f"client-{name}"), issuer, env=env),
            )
            for name, env in envs.items()
        }
        yield {name: future.result() for name, future in started.items()}


@pytest.fixture(scope="package")
def service(verifiers: dict[str, ServiceProcess]) -> ServiceProcess:
    return verifiers["plain"]


@pytest.fixture(scope="package")
def tls_service(verifiers: dict[str, ServiceProcess]) -> ServiceProcess:
    return verifiers["tls"]


@pytest.fixture(scope="package")
def mtls_service(verifiers: dict[str, ServiceProcess]) -> ServiceProcess:
    return verifiers["mtls"]


@pytest.fixture(scope="package")
def installs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Any]]]:
    """Every client installed (Python, Node) or built (Go, Java), started together the first
    time a test needs one: the installs wait on the network and the builds on the CPU."""
    jobs: dict[str, tuple[Callable[[Path], Any], str]] = {
        "go": (lambda out: make_clients("clients-go", out) / "go", "go-build"),
        "java": (lambda out: make_clients("clients-java", out) / "java", "java-build"),
        "python": (install_python_client, "python-client"),
        "node": (install_node_client, "node-project"),
    }
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        yield {
            name: pool.submit(job, tmp_path_factory.mktemp(directory))
            for name, (job, directory) in jobs.items()
        }


@pytest.fixture(scope="package")
def go_build(installs: dict[str, Future[Path]]) -> Path:
    """``make clients-go``: clients/go vetted and built as a module offline, verify-example."""
    return installs["go"].result()


@pytest.fixture(scope="package")
def java_build(installs: dict[str, Future[Path]]) -> Path:
    """``make clients-java``: the jar Maven built offline from clients/java/pom.xml, its runtime
    classpath as Maven resolved it, OpenSSL's JNI library under netty's name, verify-example."""
    return installs["java"].result()


@pytest.fixture(scope="package")
def fresh_venv(installs: dict[str, Future[FreshVenv]]) -> FreshVenv:
    """The Python client installed alone into a new virtualenv with the README's command."""
    return installs["python"].result()


@pytest.fixture(scope="package")
def node_project(installs: dict[str, Future[Path]]) -> Path:
    """A new npm project with the Node client installed from its ``npm pack`` tarball."""
    return installs["node"].result()


@pytest.fixture(scope="package")
def dead_address() -> str:
    """A loopback address where nothing listens: every call fails with UNAVAILABLE."""
    return f"127.0.0.1:{free_port()}"
