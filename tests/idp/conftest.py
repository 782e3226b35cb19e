"""The real authorization server: one process for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.idp import IdpHarness, missing_idp_dependencies


@pytest.fixture(scope="session")
def idp() -> Iterator[IdpHarness]:
    """panva's oidc-provider (AS) and openid-client (client) in one Node process.

    Fails (never skips) when Node or the pinned npm packages are missing, so that a broken CI
    install cannot pass silently."""
    problem = missing_idp_dependencies()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with IdpHarness() as harness:
        yield harness
