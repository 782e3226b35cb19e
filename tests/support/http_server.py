"""Small HTTP servers on loopback for tests: a handler class served from a daemon thread, and
the boilerplate of one quiet handler and one complete response."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that writes no access log (pytest shows failures, not requests)."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def send_body(self, body: bytes, content_type: str, status: int = 200) -> None:
        """Answer ``status`` with ``body`` (Content-Type and Content-Length set)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackHttpServer:
    """``handler`` served on 127.0.0.1 (a free port) by a ``ThreadingHTTPServer`` in a daemon
    thread, until :meth:`close` (or the end of a ``with`` block); over TLS with ``tls`` (a
    server context), a failed handshake dropping the connection."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()

    def __enter__(self) -> LoopbackHttpServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
