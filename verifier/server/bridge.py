"""From the gRPC worker threads to the engine: decisions made on the calling thread.

The service answers calls on a ``grpc.server`` thread pool (measured fastest for this workload:
see docs/performance.md) while everything that waits on the network in the background (key
refresh, introspection, Sentinel/Cluster Redis, health probes) lives on one asyncio event loop.
:class:`BlockingDecisions` gives the front doors a sync ``decide``: the engine's checks run on the
worker thread itself, and only a port without a sync fast path has its coroutine run on that loop
(:class:`LoopRunner`), blocking the worker thread, not the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from verifier.engine.model import Decision, RequestFacts
from verifier.engine.verifier import RunAsync

T = TypeVar("T")

DEFAULT_IO_TIMEOUT_S = 30.0
"""Upper bound on one port call run on the loop. The ports bound themselves far tighter (Redis
deadline, HTTP timeouts); this only keeps a worker thread from waiting forever on a wedged loop."""


class AsyncEngine(Protocol):
    async def verify(self, facts: RequestFacts, *, explain: bool = False) -> Decision: ...


class LoopRunner:
    """Runs coroutines on ``loop`` (running in another thread) for the calling thread.

    The coroutine runs with the caller's context variables (the current trace span, the
    decision scope), as ``asyncio.run_coroutine_threadsafe`` copies them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float = DEFAULT_IO_TIMEOUT_S):
        self._loop = loop
        self._timeout_s = timeout_s
        self._loop_thread: int | None = None
        loop.call_soon_threadsafe(self._note_thread)

    def _note_thread(self) -> None:
        self._loop_thread = threading.get_ident()

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.get_ident() == self._loop_thread:
            coro.close()
            raise RuntimeError("LoopRunner called on its own event loop (would deadlock)")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self._timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"event loop did not answer within {self._timeout_s}s") from None


class BlockingDecisions:
    """The front doors' engine port: ``decide(facts, explain=)`` on the calling thread."""

    def __init__(
        self,
        engine: AsyncEngine,
        run_async: RunAsync[Any],
        *,
        observe: Callable[[Decision], None] | None = None,
    ) -> None:
        self._engine = engine
        self._run_async = run_async
        self._blocking = getattr(engine, "verify_blocking", None)
        self._observe = observe

    def decide(self, facts: RequestFacts, *, explain: bool = False) -> Decision:
        if self._blocking is not None:
            decision: Decision = self._blocking(facts, explain=explain, run_async=self._run_async)
        else:  # an engine with no sync driver (test doubles) runs wholly on the loop
            decision = self._run_async(self._engine.verify(facts, explain=explain))
        if self._observe is not None:
            self._observe(decision)
        return decision
