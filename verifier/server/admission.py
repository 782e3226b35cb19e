"""Admission of gRPC calls to the worker threads: a call holds a thread only once its request
message has arrived.

grpcio's synchronous server hands each call to its thread pool as soon as the call's headers
arrive, and the pool thread then *waits* for the request message. A caller that opens calls and
never sends their message (a crashed gateway's half-open connection does the same) pins one
thread per call, and ``DPOP_SERVER_THREADS`` such calls stall every other caller, health
included. :class:`AdmissionExecutor`, installed as the server's thread pool, changes exactly that:

* **Unary-request methods** (``Verify``, ``Check``, health): the receive of the request message
  starts on grpcio's serving thread, which never blocks on it (grpc core completes it on its
  completion queue), and the call is submitted to the workers only once the message is in.
  Until then a call holds no thread and counts against its own bounds: at most
  ``max_pending`` such calls per process (beyond: ``RESOURCE_EXHAUSTED``, at once), each must
  deliver its message within ``receive_timeout`` (else ``DEADLINE_EXCEEDED``), and HTTP/2
  ``MAX_CONCURRENT_STREAMS`` bounds them per connection (:func:`server_options`).
* **Complete calls** count against ``max_calls`` (beyond: ``RESOURCE_EXHAUSTED`` at once, never
  an unbounded queue) and run on the ``workers`` threads. A waiting caller never uses that cap
  up.
* **Streaming calls** (health ``Watch``, reflection) hold a thread for as long as they stream,
  so they run on a few threads of their own (``stream_workers``, refused beyond), never on the
  ones that answer ``Check`` and ``Verify``.

This reaches into grpcio's private ``grpc._server`` module (the arguments its handlers pass to
``thread_pool.submit`` and its per-call state). :func:`check_grpc_internals` verifies at start-up
that those internals are the ones this module was written against (the supported range is
pinned in ``pyproject.toml``) and refuses to start otherwise; ``tests/unit`` runs it and the
stalled-call tests exercise it end to end. docs/performance.md explains why this, and not
``grpc.aio``, and the patch offered upstream.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from grpc import _server
from grpc._cython import cygrpc

_log = logging.getLogger(__name__)

STREAM_WORKERS = 4
"""Threads (and so concurrent calls) for streaming methods: health Watch and reflection."""


class GrpcInternalsChanged(RuntimeError):
    """The installed grpcio is not one whose private server internals this module knows."""


def _unary_thunk_code() -> Any:
    # _unary_request(...) only builds its closure; its code object identifies that closure
    # among the "argument thunks" grpcio hands to submit().
    return _server._unary_request(None, None, None).__code__


def check_grpc_internals() -> None:
    """Raise :class:`GrpcInternalsChanged` unless grpcio's private server module has what
    :class:`AdmissionExecutor` relies on, with the shapes it expects."""
    required = (
        "_unary_request",
        "_receive_message",
        "_abort",
        "_is_rpc_state_active",
        "_unary_response_in_pool",
        "_stream_response_in_pool",
        "_handle_unary_unary",
        "_handle_unary_stream",
        "_RPCState",
        "_RECEIVE_MESSAGE_TOKEN",
        "_EMPTY_FLAGS",
        "_OPEN",
        "_CLOSED",
    )
    missing = [name for name in required if not hasattr(_server, name)]
    if missing:
        raise GrpcInternalsChanged(f"grpc._server lacks {', '.join(missing)}")
    in_pool = ["rpc_event", "state", "behavior", "argument_thunk"]
    for name in ("_unary_response_in_pool", "_stream_response_in_pool"):
        params = list(inspect.signature(getattr(_server, name)).parameters)
        if params[:4] != in_pool:
            raise GrpcInternalsChanged(f"grpc._server.{name} takes {params}")
    for name in ("_handle_unary_unary", "_handle_unary_stream"):
        source = inspect.getsource(getattr(_server, name))
        if "thread_pool.submit(\n        state.context.run," not in source:
            raise GrpcInternalsChanged(f"grpc._server.{name} no longer submits as expected")
    state = _server._RPCState()
    for attr in ("condition", "request", "client", "due", "statused"):
        if not hasattr(state, attr):
            raise GrpcInternalsChanged(f"grpc._server._RPCState has no {attr}")
    if _unary_thunk_code().co_name != "unary_request":
        raise GrpcInternalsChanged("grpc._server._unary_request builds another closure")


def _done() -> futures.Future[None]:
    # What grpcio gets back from submit(): it only counts the call as active until done, and
    # this module does its own counting.
    future: futures.Future[None] = futures.Future()
    future.set_result(None)
    return future


@dataclass(eq=False, slots=True)
class _Waiting:
    """A call whose request message has not arrived yet."""

    deadline: float
    rpc_event: Any
    state: Any
    expired: bool = False


@dataclass(slots=True)
class AdmissionStats:
    """What the call cap and the liveness watchdog read (written under the executor's lock)."""

    running: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    """When a complete call last finished, or the pool was last found idle."""


class AdmissionExecutor(futures.ThreadPoolExecutor):
    """The thread pool to give ``grpc.server``: see the module docstring.

    ``max_calls`` bounds complete calls (queued or running), ``max_pending`` calls still
    waiting for their request message, ``receive_timeout`` (seconds) how long one may wait.
    """

    def __init__(
        self,
        *,
        workers: int,
        max_calls: int,
        max_pending: int,
        receive_timeout: float,
        stream_workers: int = STREAM_WORKERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_grpc_internals()
        super().__init__(max_workers=workers, thread_name_prefix="dpop-grpc")
        self._streams = futures.ThreadPoolExecutor(
            max_workers=stream_workers, thread_name_prefix="dpop-grpc-stream"
        )
        self._max_calls = max_calls
        self._max_pending = max_pending
        self._max_streams = stream_workers
        self._receive_timeout = receive_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: dict[_Waiting, None] = {}  # arrival order = deadline order
        self._streaming = 0
        self._unary_code = _unary_thunk_code()
        self.stats = AdmissionStats(last_progress=clock())
        self._closed = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep, name="dpop-grpc-receive-deadline", daemon=True
        )
        self._sweeper.start()

    # grpcio calls submit(state.context.run, in_pool, rpc_event, state, behavior, argument,
    # request_deserializer, response_serializer) on its serving thread, holding state.condition.
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        if len(args) != 7 or kwargs or args[0] not in _IN_POOL:
            return super().submit(fn, *args, **kwargs)  # not a call (never from grpcio today)
        in_pool, rpc_event, state, _behavior, argument, deserializer, _serializer = args
        if getattr(argument, "__code__", None) is not self._unary_code:
            # A request stream: its handler reads the messages as they come, on a stream thread.
            self._start_stream(fn, args)
            return _done()
        if not _server._is_rpc_state_active(state):
            return _done()
        with self._lock:
            full = len(self._waiting) >= self._max_pending
            if not full:
                waiting = _Waiting(self._clock() + self._receive_timeout, rpc_event, state)
                self._waiting[waiting] = None
        if full:
            _refuse(state, rpc_event, cygrpc.StatusCode.resource_exhausted, _TOO_MANY_WAITING)
            return _done()
        on_message = _server._receive_message(state, rpc_event.call, deserializer)

        def received(event: Any) -> Any:
            outcome = on_message(event)  # stores the request (or notes the close) in state
            self._arrived(waiting, fn, in_pool, args)
            return outcome

        rpc_event.call.start_server_batch(
            (cygrpc.ReceiveMessageOperation(_server._EMPTY_FLAGS),), received
        )
        state.due.add(_server._RECEIVE_MESSAGE_TOKEN)
        return _done()

    def _arrived(self, waiting: _Waiting, fn: Callable[..., Any], in_pool: Any, args: Any) -> None:
        """On grpcio's serving thread: the receive ended (a message, a close or a cancel)."""
        state, rpc_event = waiting.state, waiting.rpc_event
        with self._lock:
            self._waiting.pop(waiting, None)
        with state.condition:
            if waiting.expired or not _server._is_rpc_state_active(state):
                return
            request, state.request = state.request, None
            if request is None:
                if state.client is _server._CLOSED:  # half-closed without a message
                    method = rpc_event.call_details.method.decode("utf-8", "replace")
                    details = f'"{method}" requires exactly one request message.'
                    _server._abort(
                        state, rpc_event.call, cygrpc.StatusCode.unimplemented, details.encode()
                    )
                return
            arguments = (*args[:4], _Thunk(state, request), *args[5:])
            if in_pool is _server._stream_response_in_pool:
                self._start_stream(fn, arguments)
                return
            with self._lock:
                busy = self.stats.running >= self._max_calls
                if not busy:
                    self.stats.running += 1
            if busy:
                _server._abort(state, rpc_event.call, cygrpc.StatusCode.resource_exhausted, _BUSY)
                return
        super().submit(fn, *arguments).add_done_callback(self._finished)

    def _finished(self, _future: futures.Future[Any]) -> None:
        with self._lock:
            self.stats.running -= 1
            self.stats.last_progress = self._clock()

    def _start_stream(self, fn: Callable[..., Any], args: Any) -> None:
        state, rpc_event = args[2], args[1]
        with self._lock:
            full = self._streaming >= self._max_streams
            if not full:
                self._streaming += 1
        if full:
            _refuse(state, rpc_event, cygrpc.StatusCode.resource_exhausted, _TOO_MANY_STREAMS)
            return
        self._streams.submit(fn, *args).add_done_callback(self._stream_finished)

    def _stream_finished(self, _future: futures.Future[Any]) -> None:
        with self._lock:
            self._streaming -= 1

    def progress_age(self) -> float:
        """Seconds since the workers last showed progress: a call finished, or none was
        running. Large only while calls are admitted and none of them finishes (wedged)."""
        now = self._clock()
        stats = self.stats
        if stats.running == 0:
            stats.last_progress = now
        return now - stats.last_progress

    def _sweep(self) -> None:
        """Fail calls whose request message is overdue (one thread for all of them)."""
        tick = min(0.25, max(0.01, self._receive_timeout / 4))
        while not self._closed.wait(tick):
            now = self._clock()
            overdue: list[_Waiting] = []
            with self._lock:
                for waiting in self._waiting:
                    if waiting.deadline > now:
                        break
                    overdue.append(waiting)
                for waiting in overdue:
                    del self._waiting[waiting]
            for waiting in overdue:
                with waiting.state.condition:
                    if _server._is_rpc_state_active(waiting.state):
                        waiting.expired = True
                        _server._abort(
                            waiting.state,
                            waiting.rpc_event.call,
                            cygrpc.StatusCode.deadline_exceeded,
                            _OVERDUE,
                        )

    def drain(self, timeout: float) -> int:
        """After the server stopped: stop taking work, wait up to ``timeout`` seconds for the
        calls still on worker threads; return how many are still running."""
        self.shutdown(wait=False, cancel_futures=True)
        deadline = self._clock() + timeout
        while self.stats.running and self._clock() < deadline:
            time.sleep(0.01)
        return self.stats.running

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed.set()
        self._streams.shutdown(wait=wait, cancel_futures=cancel_futures)
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


class _Thunk:
    """The argument grpcio's in-pool function asks for: the received request, or None if the
    call was cancelled while it waited for a worker (then nothing runs)."""

    __slots__ = ("_request", "_state")

    def __init__(self, state: Any, request: Any) -> None:
        self._state = state
        self._request = request

    def __call__(self) -> Any:
        with self._state.condition:
            return self._request if _server._is_rpc_state_active(self._state) else None


def _refuse(state: Any, rpc_event: Any, code: Any, details: bytes) -> None:
    with state.condition:
        if _server._is_rpc_state_active(state):
            _server._abort(state, rpc_event.call, code, details)


_IN_POOL = frozenset({_server._unary_response_in_pool, _server._stream_response_in_pool})
_BUSY = b"too many concurrent calls (DPOP_MAX_CONCURRENT_CALLS)"
_TOO_MANY_WAITING = b"too many calls waiting for their request message (DPOP_MAX_PENDING_CALLS)"
_TOO_MANY_STREAMS = b"too many streaming calls"
_OVERDUE = b"request message not received in time (DPOP_RECEIVE_TIMEOUT_MS)"
