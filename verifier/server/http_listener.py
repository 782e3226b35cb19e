"""The HTTP listeners, on waitress: forward auth (``DPOP_HTTP_LISTEN``) and the Prometheus
endpoint (``DPOP_METRICS_LISTEN``, :mod:`verifier.server.metrics_listener`).

Why waitress (docs/performance.md, "Forward-auth listener"): it parses HTTP/1.1 with a
well-kept library, and it **receives first**: one thread reads every connection, and a request
reaches a worker thread only once its head (and body) is complete, the same model as the gRPC
port's :class:`~verifier.server.admission.AdmissionExecutor`. A slow or silent caller holds a
connection, never a thread. Measured against uvicorn (httptools) on this project's null
application it also carried more requests per second on one core.

What one caller can hold, and for how long:

* **connections**: at most ``DPOP_MAX_CONNECTIONS`` open (then new ones wait in the kernel's
  backlog); ``poll()`` rather than ``select()``, so more than 1,024 work;
* **time to send a request**: a request head (and body) must be complete within
  ``DPOP_RECEIVE_TIMEOUT_MS`` of its first byte, else the connection is closed; checked every
  second (the subclasses below add this to waitress, which only times out idleness);
* **idle keep-alive**: closed after ``DPOP_HTTP_IDLE_TIMEOUT_SECONDS`` without traffic;
* **bytes**: a request head of at most ``DPOP_HTTP_MAX_HEADER_BYTES`` (beyond: 431), a body
  of at most :data:`MAX_BODY_BYTES` (beyond: 413; a forward-auth request needs none);
* **threads**: ``DPOP_HTTP_THREADS`` answer complete requests; one request per connection at a
  time (pipelined ones wait their turn on that connection only).

waitress's own answers to malformed HTTP are 400/413/431 with a short text body, never a
traceback (``expose_tracebacks`` off).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import waitress.channel  # type: ignore[import-untyped]
import waitress.server  # type: ignore[import-untyped]
from waitress import wasyncore
from waitress.adjustments import Adjustments  # type: ignore[import-untyped]

from verifier.config import ServerSettings

MAX_BODY_BYTES = 65536
"""Largest request body read (and ignored): gateways send none unless told to forward it."""
MAINTENANCE_INTERVAL_SECONDS = 1
"""How often idle and slow connections are looked for."""

_log = logging.getLogger(__name__)


class _Channel(waitress.channel.HTTPChannel):  # type: ignore[misc]
    """A connection that remembers when the request it is receiving began."""

    request_started = 0.0
    """``time.monotonic()`` of the first byte of the request being received; 0: none."""

    def received(self, data: bytes) -> bool:
        result: bool = super().received(data)
        if self.request is None:
            self.request_started = 0.0
        elif not self.request_started:
            self.request_started = time.monotonic()
        return result


class _Server(waitress.server.TcpWSGIServer):  # type: ignore[misc]
    """waitress's TCP server, closing connections whose request is late as well as idle ones."""

    channel_class = _Channel
    receive_timeout = 5.0

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        cutoff = time.monotonic() - self.receive_timeout
        for channel in self.active_channels.values():
            started = getattr(channel, "request_started", 0.0)
            if started and started < cutoff and not channel.requests:
                channel.will_close = True


def check_waitress_internals() -> None:
    """Fail at start-up, not under attack, if a waitress release moved what the receive
    deadline builds on (``pyproject.toml`` pins the minor version)."""
    channel = waitress.channel.HTTPChannel
    server = waitress.server.TcpWSGIServer
    missing = [
        name
        for owner, name in (
            (channel, "received"),
            (channel, "will_close"),
            (server, "maintenance"),
            (server, "channel_class"),
            (server, "run"),
        )
        if not hasattr(owner, name)
    ]
    if missing:
        raise RuntimeError(f"unsupported waitress version: missing {', '.join(missing)}")


class HttpListener:
    """A bounded HTTP/1.1 server for a WSGI ``app`` on its own threads: :meth:`start`, then
    :meth:`stop`. The forward-auth listener and the Prometheus endpoint are both one.

    ``listen`` and ``threads`` default to the forward-auth listener's settings; every other
    bound (connections, receive deadline, idle time, head size) is the server section's."""

    def __init__(
        self,
        app: Callable[..., Any],
        settings: ServerSettings,
        *,
        listen: str = "",
        threads: int = 0,
        name: str = "forward-auth",
        setting: str = "DPOP_HTTP_LISTEN",
    ) -> None:
        check_waitress_internals()
        listen = listen or settings.http_listen
        for name in ("waitress", "waitress.queue"):
            # "Task queue depth is N" on every queued request, and socket-level chatter.
            logging.getLogger(name).setLevel(logging.ERROR)
        adjustments = Adjustments(
            listen=listen,
            threads=threads or settings.http_threads,
            connection_limit=settings.max_connections,
            channel_timeout=settings.http_idle_timeout_seconds,
            cleanup_interval=MAINTENANCE_INTERVAL_SECONDS,
            max_request_header_size=settings.http_max_header_bytes,
            max_request_body_size=MAX_BODY_BYTES,
            asyncore_use_poll=True,
            expose_tracebacks=False,
            clear_untrusted_proxy_headers=False,  # trust is decided by forward_auth
            ident="dpop-verifier",
            backlog=1024,
        )
        try:
            self._server = _Server(app, map={}, adj=adjustments)
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {listen} ({setting}): {exc}") from exc
        self._server.receive_timeout = settings.receive_timeout_ms / 1000
        self._name = name
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def address(self) -> str:
        """``host:port`` actually bound (port 0 resolved)."""
        host, port = self._server.effective_host, self._server.effective_port
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._server.run()
        except Exception:  # the loop itself failed: nothing more is served here
            _log.exception("the %s listener stopped", self._name)

    def in_flight(self) -> int:
        """Requests received and not yet answered."""
        for _ in range(3):
            try:
                return sum(len(c.requests) for c in list(self._server.active_channels.values()))
            except RuntimeError:  # the serving thread changed the dict meanwhile
                continue
        return 1

    def stop(self, grace: float) -> int:
        """Stop accepting, let requests in flight finish for up to ``grace`` seconds, close
        every connection; return how many requests were still unanswered."""
        server = self._server
        if not self._thread.is_alive():
            return 0
        server.trigger.pull_trigger(lambda: _stop_accepting(server))
        deadline = time.monotonic() + grace
        while (left := self.in_flight()) and time.monotonic() < deadline:
            time.sleep(0.02)
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        self._thread.join(timeout=5)
        return left


def _stop_accepting(server: _Server) -> None:
    """On the serving thread: close the listening socket; connections stay open."""
    server.accepting = False
    wasyncore.dispatcher.close(server)
