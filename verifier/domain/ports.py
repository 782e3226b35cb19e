"""The engine's ports: the interfaces behind which all of a decision's I/O and observation sit.

- :class:`ReplayStore`: records each accepted proof once, atomically, across replicas
  (adapters: :mod:`verifier.replay`);
- :class:`AccessTokenValidator`: an access token's verified claims (adapter:
  :class:`verifier.tokens.validator.TokenValidator`);
- :class:`Instrumentation`: the engine's stages, observed (adapter:
  :class:`verifier.telemetry.decorators.EngineHooks`);
- :class:`TelemetrySink`: each front-door call, traced, counted and logged (adapter:
  :class:`verifier.telemetry.sink.Telemetry`).

The decorators of :mod:`verifier.telemetry.decorators` implement the same protocols around an
adapter, so that the engine never knows whether it is observed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from verifier.domain.model import Decision, RequestFacts, TokenClaims


class ReplayStoreUnavailable(Exception):
    """The store did not answer (in time): the caller must fail closed."""


class ReplayStore(Protocol):
    """Remembers proof keys for a bounded time.

    ``first_use(key, ttl_seconds)`` returns True exactly once per ``key`` while the key is
    remembered (atomic: concurrent callers for the same key see at most one True), and raises
    :class:`ReplayStoreUnavailable` when it cannot tell. Every method blocks the calling thread
    (for a bounded time) and is safe to call from many threads at once.
    """

    def first_use(self, key: bytes, ttl_seconds: float) -> bool:
        """True the first time ``key`` is seen, False while it is remembered (a replay).

        ``key`` is remembered for ``ttl_seconds`` (must be positive) from this call. Raises
        :class:`ReplayStoreUnavailable` when the store cannot tell.
        """
        ...

    def ping(self) -> bool:
        """True when the store is reachable now (used by health), within the store's own
        deadline; never raises."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


class AccessTokenValidator(Protocol):
    """The token port (``verifier.tokens.validator.TokenValidator``, or a decorator of it)."""

    def validate(self, token: str, now: float) -> TokenClaims:
        """The token's verified claims, or raise a :class:`Denial`. Thread-safe; may block
        on bounded I/O (introspection, a key refetch)."""
        ...


class Instrumentation(Protocol):
    """Optional observer of the engine's stages (``verifier.telemetry`` provides one).

    The engine stays free of any telemetry library: it only marks where a stage begins and
    ends and reports the proof key it found. Implementations must never raise.
    """

    def stage(self, name: str) -> AbstractContextManager[object]:
        """Entered around a stage (``"proof"``); sees a :class:`Denial` that ends it."""
        ...

    def proof_key(self, alg: str, jkt: str) -> None:
        """The proof's algorithm and key thumbprint, once the key is imported."""
        ...


class DecisionRecord(Protocol):
    """What a front door fills in while its call runs: the request's facts once known, and the
    decision before the call ends (a record left without one is an ``internal_error``)."""

    facts: RequestFacts | None
    decision: Decision | None


class TelemetrySink(Protocol):
    """Where every front-door call is observed: one span, metrics and a decision-log line."""

    def decision_scope(
        self,
        rpc: str,
        *,
        metadata: Iterable[Any] = (),
        headers: Mapping[str, str] | None = None,
        facts: RequestFacts | None = None,
    ) -> AbstractContextManager[DecisionRecord]:
        """Observe one call of ``rpc``, continuing the caller's trace from the call's
        ``metadata`` or the HTTP ``headers``; never raises."""
        ...
