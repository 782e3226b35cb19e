"""The pure parts of the serving core: readiness hysteresis and evidence, the liveness
watchdog's judgement, and the check that grpcio's private internals are the expected ones."""

from __future__ import annotations

import pytest
from grpc import _server

from verifier.domain.model import Decision
from verifier.domain.reasons import Reason, RfcError
from verifier.server.admission import GrpcInternalsChanged, check_grpc_internals
from verifier.server.health import (
    FAILURES_TO_DOWN,
    Hysteresis,
    StoreEvidence,
    Watchdog,
    reached_store,
    seconds_to_not_serving,
)


def decision(reason: Reason, *, jti: str = "") -> Decision:
    return Decision(
        allow=reason is Reason.OK,
        reason=reason,
        message="",
        rfc_error=RfcError.NONE,
        http_status=200 if reason is Reason.OK else 401,
        jti=jti,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("made", "reached"),
    [
        (decision(Reason.OK, jti="j"), True),  # the proof was recorded
        (decision(Reason.REPLAYED), True),  # the store answered "seen"
        (decision(Reason.OK), False),  # a route with mode off, or Bearer: no replay write
        (decision(Reason.REPLAY_STORE_UNAVAILABLE), False),
        (decision(Reason.PROOF_SIGNATURE_INVALID), False),
    ],
)
def test_which_decisions_prove_the_store_answered(made: Decision, reached: bool) -> None:
    assert reached_store(made) is reached


def test_evidence_ages_from_the_last_answered_request() -> None:
    clock = Clock()
    evidence = StoreEvidence(clock)
    assert evidence.age() == float("inf")
    evidence.observe(decision(Reason.OK, jti="j"))
    clock.now += 2.5
    evidence.observe(decision(Reason.PROOF_SIGNATURE_INVALID))  # no evidence either way
    assert evidence.age() == 2.5


def test_down_only_after_failures_in_a_row_and_up_at_the_first_success() -> None:
    state = Hysteresis()
    assert state.observe(False) is False  # the first observation decides the start
    assert state.observe(True) is True
    for _ in range(FAILURES_TO_DOWN - 1):
        assert state.observe(False) is True
    assert state.observe(True) is True  # a success resets the count
    for _ in range(FAILURES_TO_DOWN - 1):
        state.observe(False)
    assert state.observe(False) is False
    assert state.observe(True) is True


def test_the_documented_time_to_not_serving_covers_hanging_pings() -> None:
    assert seconds_to_not_serving(1.0, 2.0) == FAILURES_TO_DOWN * 3.0 + 1.0


def watchdog(clock: Clock, ages: list[float]) -> Watchdog:
    return Watchdog(stall_seconds=10, progress_ages=lambda: ages, publish=print, clock=clock)


def test_the_watchdog_calls_a_silent_event_loop_wedged() -> None:
    clock = Clock()
    dog = watchdog(clock, [0.0])
    assert dog.wedged() == ""
    clock.now += 9
    assert dog.wedged() == ""
    clock.now += 2
    assert "event loop" in dog.wedged()
    dog.beat()
    assert dog.wedged() == ""


def test_the_watchdog_calls_workers_without_progress_wedged() -> None:
    clock = Clock()
    ages = [3.0]
    dog = watchdog(clock, ages)
    assert dog.wedged() == ""
    ages[0] = 11.0
    assert "no admitted call has finished" in dog.wedged()


def test_the_installed_grpcio_has_the_internals_admission_relies_on() -> None:
    check_grpc_internals()


@pytest.mark.parametrize(
    "name", ["_unary_request", "_receive_message", "_abort", "_unary_response_in_pool"]
)
def test_a_missing_internal_stops_the_service_loudly(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.delattr(_server, name)
    with pytest.raises(GrpcInternalsChanged, match=name):
        check_grpc_internals()


def test_a_changed_call_shape_stops_the_service_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    def in_pool(rpc_event, state, behavior, request, *rest):  # type: ignore[no-untyped-def]
        return None

    monkeypatch.setattr(_server, "_unary_response_in_pool", in_pool)
    with pytest.raises(GrpcInternalsChanged, match="takes"):
        check_grpc_internals()
