"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer, missing_redis_binaries


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty ``redis-server`` on loopback for one test, killed afterwards.

    Fails (never skips) when redis-server is not installed, so that a broken CI install
    cannot pass silently.
    """
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with RedisServer() as server:
        yield server
