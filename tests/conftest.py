"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer, missing_redis_binaries
from tests.support.redis_topologies import (
    ClusterSetup,
    SentinelSetup,
    cluster_setup,
    sentinel_setup,
)


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


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSetup]:
    """A master, two replicas and three sentinels, one set-up per test module."""
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with sentinel_setup(replicas=2, sentinels=3) as setup:
        yield setup


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSetup]:
    """A 3-master Redis Cluster whose first master has a replica, one per test module."""
    problem = missing_redis_binaries()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with cluster_setup(masters=3, replica_of_first=True) as setup:
        yield setup
