"""One running verifier shared by the client tests (Python, Node, Go, Java) in this package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
