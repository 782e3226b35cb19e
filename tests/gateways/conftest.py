"""One verifier service and one echo upstream for every gateway test (package scope).

The service runs the forward-auth listener (``DPOP_HTTP_LISTEN``) with per-route policies, a
nonce secret, and a second issuer whose keys cannot be fetched, so that its tokens are a real
``503`` (``key_source_unavailable``) while every other request is served.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.envoy import EchoUpstream
from tests.support.gateways import HOST
from tests.support.net import free_port
from tests.support.service import AUDIENCE, ServiceProcess, TestIssuer, running_service

NONCE_SECRET = "n" * 48
DOWN_ISSUER = "https://down.test"
ROUTES = [
    {"path_prefix": "/legacy", "mode": "allow-bearer"},
    {"path_prefix": "/public", "mode": "off"},
    {"host": HOST, "path_prefix": "/nonce", "mode": "require", "nonce_required": True},
]


@pytest.fixture(scope="package")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="package")
def upstream() -> Iterator[EchoUpstream]:
    echo = EchoUpstream()
    yield echo
    echo.close()


@pytest.fixture(scope="package")
def service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[ServiceProcess]:
    down = {"issuer": DOWN_ISSUER, "audience": AUDIENCE,
            "jwks_uri": f"http://127.0.0.1:{free_port()}/jwks"}  # fmt: skip
    with running_service(
        tmp_path_factory.mktemp("svc"),
        issuer,
        env={"DPOP_HTTP_LISTEN": "127.0.0.1:0"},
        routes=ROUTES,
        nonce_secret=NONCE_SECRET,
        issuers=[*issuer.config()["issuers"], down],
    ) as svc:
        assert svc.http_address, "the service announced no forward-auth listener"
        yield svc
