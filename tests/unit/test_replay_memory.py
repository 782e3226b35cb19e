"""MemoryReplayStore: exactly-once within the TTL, bounded, never forgets a live key."""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from tests.support.threads import race_in_threads
from verifier.config import ConfigError, ReplaySettings
from verifier.replay import MemoryReplayStore, ReplayStoreUnavailable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_first_use_then_replay(clock: FakeClock) -> None:
    store = MemoryReplayStore(clock=clock)
    assert store.first_use(b"k1", 60)
    assert not store.first_use(b"k1", 60)
    assert not store.first_use(b"k1", 60)
    assert store.first_use(b"k2", 60)


def test_key_is_remembered_until_its_ttl_has_passed(clock: FakeClock) -> None:
    store = MemoryReplayStore(clock=clock)
    assert store.first_use(b"k", 10)
    clock.now += 9.999
    assert not store.first_use(b"k", 10)
    clock.now += 0.001
    assert store.first_use(b"k", 10)
    assert not store.first_use(b"k", 10)


def test_expiry_with_the_real_clock() -> None:
    store = MemoryReplayStore()
    assert store.first_use(b"k", 0.05)
    assert not store.first_use(b"k", 0.05)
    time.sleep(0.1)
    assert store.first_use(b"k", 0.05)


def test_expired_keys_are_purged(clock: FakeClock) -> None:
    store = MemoryReplayStore(clock=clock)
    for i in range(100):
        assert store.first_use(i.to_bytes(4, "big"), 5)
    assert len(store) == 100
    clock.now += 5
    assert store.first_use(b"new", 5)
    assert len(store) == 1


def test_full_store_refuses_instead_of_evicting_a_live_key(clock: FakeClock) -> None:
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for key in (b"a", b"b", b"c"):
        assert store.first_use(key, 60)
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use(b"d", 60)
    # Every live key is still remembered: replays are still caught.
    for key in (b"a", b"b", b"c"):
        assert not store.first_use(key, 60)


def test_full_store_accepts_again_once_keys_expire(clock: FakeClock) -> None:
    store = MemoryReplayStore(max_entries=2, clock=clock)
    assert store.first_use(b"short", 1)
    assert store.first_use(b"long", 60)
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use(b"new", 60)
    clock.now += 1
    assert store.first_use(b"new", 60)
    assert not store.first_use(b"long", 60)
    with pytest.raises(ReplayStoreUnavailable):
        store.first_use(b"newer", 60)


def test_rejects_a_non_positive_ttl(clock: FakeClock) -> None:
    store = MemoryReplayStore(clock=clock)
    with pytest.raises(ValueError):
        store.first_use(b"k", 0)


def test_ping_and_close(clock: FakeClock) -> None:
    store = MemoryReplayStore(clock=clock)
    assert store.ping()
    assert store.first_use(b"k", 60)
    store.close()
    assert len(store) == 0


@pytest.mark.parametrize("url", ["memory://", "MEMORY://", "memory:///"])
def test_factory_opens_a_memory_store(url: str) -> None:
    store = ReplaySettings(replay_url=url, memory_replay_max_entries=7).open_store()
    assert isinstance(store, MemoryReplayStore)
    store.close()


@pytest.mark.parametrize(
    "url", ["http://cache:6379", "localhost:6379", "unix:///run/redis.sock", "memcached://x"]
)
def test_factory_rejects_other_schemes_naming_the_setting(url: str) -> None:
    # The replay section refuses them before any store is opened.
    with pytest.raises(ConfigError, match="DPOP_REPLAY_URL"):
        ReplaySettings(replay_url=url).open_store()


def test_factory_error_does_not_echo_a_password() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ReplaySettings(replay_url="http://user:s3cret@cache:6379").open_store()
    assert "s3cret" not in str(excinfo.value)


def test_a_flood_of_unique_jtis_stays_within_the_bound(clock: FakeClock) -> None:
    cap = 20_000
    store = MemoryReplayStore(max_entries=cap, clock=clock)
    for i in range(cap):
        assert store.first_use(b"live-%d" % i, 60)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        refused = 0
        for i in range(100_000):  # five times the bound, all inside the window
            try:
                store.first_use(b"flood-%d" % i, 60)
            except ReplayStoreUnavailable:
                refused += 1
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert refused == 100_000
    assert len(store) == cap
    assert grown < 64 * 1024  # nothing was kept for the refused keys
    # No live key was evicted to make room: every earlier proof is still a replay.
    assert not any([store.first_use(b"live-%d" % i, 60) for i in range(0, cap, 97)])
    clock.now += 60
    assert store.first_use(b"after-the-window", 60)
    assert len(store) == 1


# --- Many threads at once -----------------------------------------------------------------------


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Switch threads as often as CPython allows, so that races show up if there are any."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("fast_thread_switching")
def test_many_threads_racing_on_one_key_see_one_true() -> None:
    store = MemoryReplayStore()
    for round_ in range(5):
        key = b"same-%d" % round_
        results = race_in_threads([lambda k=key: store.first_use(k, 60)] * 200)
        assert results.count(True) == 1
        assert results.count(False) == 199


@pytest.mark.usefixtures("fast_thread_switching")
def test_threads_filling_a_bounded_store_never_exceed_the_bound(clock: FakeClock) -> None:
    # 16 threads x 500 unique keys into room for 5,000, while short-lived keys expire.
    store = MemoryReplayStore(max_entries=5_000, clock=clock)
    long_lived: list[list[bytes]] = [[] for _ in range(16)]

    def fill(thread: int) -> bool:
        for i in range(500):
            if i == 250 and thread == 0:
                clock.now += 1  # the 1 s keys written so far expire
            key = b"%d-%d" % (thread, i)
            try:
                if store.first_use(key, 1 if i < 100 else 60) and i >= 100:
                    long_lived[thread].append(key)
            except ReplayStoreUnavailable:
                pass
            assert len(store) <= 5_000
        return True

    results = race_in_threads([lambda t=t: fill(t) for t in range(16)])
    assert results == [True] * 16
    accepted = [key for keys in long_lived for key in keys]
    # At worst the clock moves after every thread is done: the 1,600 short-lived keys then
    # still hold their room and 3,400 long-lived ones fit; at best all 5,000 do.
    assert 5_000 - 16 * 100 <= len(accepted) <= 5_000
    # No live key was lost under contention: each is still a replay, seen from any thread.
    checks = [lambda k=k: store.first_use(k, 60) for k in accepted[::40]]
    assert not any(race_in_threads(checks))
