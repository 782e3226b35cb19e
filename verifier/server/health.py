"""What the health services say, and why they can be believed.

* **Readiness** (the overall service ``""``, the two APIs): follows the replay store. Requests
  whose replay write the store answered are evidence that it is up, so a store that serves
  traffic is never declared down because a probe was starved of CPU. Without such evidence in
  the last probe interval the store is pinged, with its own deadline; it is declared down only
  after :data:`FAILURES_TO_DOWN` failed probes in a row, and up again at the first success.
* **Liveness** (``dpop.verifier.v1.Liveness``): NOT_SERVING while the serving path is wedged:
  calls have been admitted to the worker threads and none has finished for
  ``DPOP_LIVENESS_STALL_SECONDS``, or the event loop (key refresh, introspection, probes) has not
  run for that long. A busy service finishes calls, so it stays SERVING. A watchdog thread of
  its own decides, so neither a wedged pool nor a wedged loop can keep it from saying so.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from verifier.domain.model import Decision
from verifier.domain.reasons import Reason

_log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0
"""How often readiness looks at the replay store."""
PROBE_TIMEOUT_SECONDS = 2.0
"""Deadline of one replay-store ping."""
FAILURES_TO_DOWN = 3
"""Failed pings in a row (with no request reaching the store meanwhile) before NOT_SERVING."""
LOOP_BEAT_SECONDS = 0.5
"""How often the event loop proves it runs."""


def seconds_to_not_serving(
    interval: float = PROBE_INTERVAL_SECONDS, timeout: float = PROBE_TIMEOUT_SECONDS
) -> float:
    """The longest time from the store's death to NOT_SERVING (every ping hangs to its
    deadline); a refused connection fails at once, so usually about ``FAILURES_TO_DOWN`` s."""
    return FAILURES_TO_DOWN * (interval + timeout) + interval


class Pingable(Protocol):
    def ping(self) -> bool: ...


def reached_store(decision: Decision) -> bool:
    """True when making ``decision`` got an answer from the replay store: a recorded proof
    (an allow naming its ``jti``) or a replay found."""
    return decision.reason is Reason.REPLAYED or (decision.allow and bool(decision.jti))


class StoreEvidence:
    """When a request last got an answer from the replay store (thread-safe enough: one
    float written by the workers, read by the monitor)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last = float("-inf")

    def observe(self, decision: Decision) -> None:
        if reached_store(decision):
            self.last = self._clock()

    def age(self) -> float:
        return self._clock() - self.last


@dataclass(slots=True)
class Hysteresis:
    """Up at the first success, down after ``failures_to_down`` failures in a row."""

    failures_to_down: int = FAILURES_TO_DOWN
    up: bool | None = None
    failures: int = 0

    def observe(self, ok: bool) -> bool:
        """Record one observation; return the (possibly unchanged) state."""
        if ok:
            self.failures = 0
            self.up = True
        else:
            self.failures += 1
            if self.up is None or self.failures >= self.failures_to_down:
                self.up = False
        return self.up


async def store_answers(
    store: Pingable,
    evidence: StoreEvidence | None,
    interval: float,
    deadline: float = PROBE_TIMEOUT_SECONDS,
) -> bool:
    """One observation of the store: recent request evidence, else a ping within
    ``deadline`` seconds."""
    if evidence is not None and evidence.age() <= interval:
        return True
    try:
        async with asyncio.timeout(deadline):
            # On a thread: a blocking ping, bounded by the store's own deadline as well.
            return bool(await asyncio.to_thread(store.ping))
    except Exception:
        return False


class Watchdog:
    """Decides liveness from a thread of its own (see the module docstring)."""

    def __init__(
        self,
        *,
        stall_seconds: float,
        progress_ages: Callable[[], list[float]],
        publish: Callable[[bool], None],
        clock: Callable[[], float] = time.monotonic,
        tick: float = LOOP_BEAT_SECONDS,
    ) -> None:
        self._stall = stall_seconds
        self._progress_ages = progress_ages
        self._publish = publish
        self._clock = clock
        self._tick = tick
        self._loop_beat = clock()
        self._stop = threading.Event()
        self._alive: bool | None = None
        self._thread = threading.Thread(target=self._run, name="dpop-liveness", daemon=True)

    def beat(self) -> None:
        """Called from the event loop: it runs."""
        self._loop_beat = self._clock()

    async def beat_forever(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self._tick)

    def wedged(self) -> str:
        """Why the serving path is wedged, or "" when it is not."""
        loop_age = self._clock() - self._loop_beat
        if loop_age > self._stall:
            return f"the event loop has not run for {loop_age:.0f}s"
        worst = max(self._progress_ages(), default=0.0)
        if worst > self._stall:
            return f"no admitted call has finished for {worst:.0f}s"
        return ""

    def start(self) -> None:
        """Publish the current state, then keep checking on the watchdog's thread."""
        self._check()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self._check()

    def _check(self) -> None:
        reason = self.wedged()
        alive = not reason
        if alive is self._alive or self._stop.is_set():
            return
        if not alive:
            _log.error("serving path wedged (%s): liveness NOT_SERVING", reason)
        elif self._alive is not None:
            _log.warning("serving path recovered: liveness SERVING")
        self._alive = alive
        self._publish(alive)
