"""A TCP proxy on loopback that can lose a reply: the command reaches the server and runs, but
the client's connection breaks before the answer arrives (the ambiguous failure a safe retry
policy must handle). Runs on threads of its own: one accepting, two per connection."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType


class ReplyLosingProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>; use it as a context manager.

    After :meth:`lose_next_reply`, the next chunk the server sends on any connection is
    dropped and that connection is closed on both sides.
    """

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._replies_to_lose = 0
        self.replies_lost = 0

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def __enter__(self) -> ReplyLosingProxy:
        self._start(self._accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        with self._lock:
            for sock in self._sockets:
                _shut(sock)
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()

    def lose_next_reply(self) -> None:
        with self._lock:
            self._replies_to_lose += 1

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self._target_port))
            except OSError:
                _shut(client)
                continue
            with self._lock:
                self._sockets.update((client, server))
            client.settimeout(None)
            self._start(self._pump, client, server, False)
            self._start(self._pump, server, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if replies and self._take_a_loss():
                    break
                sink.sendall(data)
        _shut(source)
        _shut(sink)

    def _take_a_loss(self) -> bool:
        with self._lock:
            if not self._replies_to_lose:
                return False
            self._replies_to_lose -= 1
            self.replies_lost += 1
            return True


def _shut(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock``, then close it (idempotent)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
