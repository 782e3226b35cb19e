"""ThrottledAlarm: loud but rate-limited, never losing count of occurrences."""

from __future__ import annotations

import logging

import pytest

from verifier.engine.alarms import ThrottledAlarm


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_occurrence_is_logged_then_throttled(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = logging.getLogger("test.alarm")
    alarm = ThrottledAlarm(log, "STORE DOWN", interval_s=10, clock=clock)
    with caplog.at_level(logging.ERROR, logger="test.alarm"):
        for _ in range(50):
            alarm.fire("timeout")
        clock.now += 9.9
        alarm.fire("timeout")
        assert len(caplog.records) == 1
        assert "STORE DOWN (1 occurrence(s)" in caplog.records[0].getMessage()
        clock.now += 0.1
        alarm.fire("refused")
    assert len(caplog.records) == 2
    second = caplog.records[1]
    assert second.levelno == logging.ERROR
    assert "(51 occurrence(s) since the last report; last: refused)" in second.getMessage()
