"""CircuitBreaker: a pure state machine over an injected clock."""

from __future__ import annotations

import sys
import threading

import pytest

from verifier.replay.breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def opened(clock: FakeClock, threshold: int = 3, cooldown_s: float = 1.0) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown_s, clock=clock)
    for _ in range(threshold):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_starts_closed_and_allows(clock: FakeClock) -> None:
    breaker = CircuitBreaker(clock=clock)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_stays_closed_below_the_threshold(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_opens_at_the_threshold_and_refuses_during_the_cooldown(clock: FakeClock) -> None:
    breaker = opened(clock)
    assert not breaker.allow()
    clock.now += 0.999
    assert not breaker.allow()


def test_lets_exactly_one_probe_through_after_the_cooldown(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now += 1.0
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()
    assert not breaker.allow()


def test_a_successful_probe_closes(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now += 1.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    # The failure count starts again from zero.
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_probe_reopens_for_a_full_cooldown(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now += 1.0
    assert breaker.allow()
    clock.now += 0.5
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.allow()


def test_a_lost_probe_is_replaced_after_a_cooldown(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now += 1.0
    assert breaker.allow()  # this probe never reports (e.g. its task was cancelled)
    clock.now += 0.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


@pytest.mark.parametrize(
    ("threshold", "cooldown_s"),
    [(0, 1.0), (-1, 1.0), (5, 0.0), (5, -1.0)],
)
def test_rejects_nonsensical_settings(threshold: int, cooldown_s: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown_s)


def test_threads_racing_after_the_cool_down_let_exactly_one_probe_through(
    clock: FakeClock,
) -> None:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            breaker = opened(clock)
            clock.now += 1.0
            assert race_allow(breaker, 100).count(True) == 1
            assert breaker.state is BreakerState.HALF_OPEN
    finally:
        sys.setswitchinterval(previous)


def race_allow(breaker: CircuitBreaker, threads: int) -> list[bool]:
    barrier = threading.Barrier(threads)
    allowed: list[bool] = []

    def probe() -> None:
        barrier.wait()
        allowed.append(breaker.allow())

    started = [threading.Thread(target=probe) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return allowed
