"""Load shapes for end-to-end replay tests: one proof fired concurrently at several service
processes, and a steady stream of fresh proofs (plus replays of accepted ones) in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.support.service import ServiceProcess, dpop_request
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.cli.mint import KeyPair


def reason(response: pb.VerifyResponse) -> str:
    return str(response.reason_code)


def same_request_concurrently(
    services: Sequence[ServiceProcess], request: dict[str, Any], total: int
) -> list[pb.VerifyResponse]:
    """Send ``request`` ``total`` times, spread evenly over ``services``, all in flight at
    once (gRPC futures), and return every answer."""
    message = pb.VerifyRequest(**request)
    futures = [
        services[i % len(services)].stub.Verify.future(message, timeout=30) for i in range(total)
    ]
    return [future.result() for future in futures]


@dataclass(frozen=True)
class Sample:
    """One Verify call of a stream."""

    sent_at: float
    latency_s: float
    reason: str
    replay_attempt: bool
    proof: str


@dataclass
class SteadyStream:
    """Sends a fresh proof every ``interval_s`` (round-robin over ``services``) from a
    background thread; with ``replay_accepted``, also re-sends an already accepted proof to
    another service each time (an attacker replaying captured proofs).

    Use as a context manager; :attr:`samples` holds every call in order.
    """

    services: Sequence[ServiceProcess]
    client: KeyPair
    token: str
    interval_s: float = 0.02
    replay_accepted: bool = False
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SteadyStream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def accepted(self) -> list[Sample]:
        return [s for s in self.snapshot() if s.reason == "ok"]

    def wait_for(self, reason_code: str, after: float, timeout_s: float) -> Sample:
        """The first sample sent after ``after`` that got ``reason_code``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for sample in self.snapshot():
                if sample.sent_at > after and sample.reason == reason_code:
                    return sample
            time.sleep(0.05)
        seen = {s.reason for s in self.snapshot() if s.sent_at > after}
        raise AssertionError(f"no {reason_code!r} within {timeout_s}s (saw {seen})")

    def _call(self, service: ServiceProcess, request: dict[str, Any], replay: bool) -> Sample:
        started = time.monotonic()
        response = service.verify(**request)
        sample = Sample(
            started, time.monotonic() - started, reason(response), replay, request["dpop"][0]
        )
        with self._lock:
            self.samples.append(sample)
        return sample

    def _run(self) -> None:
        accepted: list[dict[str, Any]] = []
        i = 0
        while not self._stop.is_set():
            began = time.monotonic()
            request = dpop_request(self.client, self.token)
            if self._call(self.services[i % len(self.services)], request, False).reason == "ok":
                accepted.append(request)
            if self.replay_accepted and accepted:
                victim = accepted[(i * 7919) % len(accepted)]
                self._call(self.services[(i + 1) % len(self.services)], victim, True)
            i += 1
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - began)))


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
