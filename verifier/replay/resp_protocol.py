"""A lean, synchronous RESP2 client: one socket, pre-encoded commands, a few microseconds of CPU
per command. The Redis replay store's only client (through ``redis_blocking``'s pools): about
half the client CPU per ``SET NX`` of redis-py's synchronous client with hiredis
(``bench/bench_replay_cpu.py``).

It speaks only what the replay store needs: commands as arrays of bulk strings; replies of
every RESP2 type; ``AUTH`` (ACL user and password) and ``SELECT`` when connecting; TLS through
an :class:`ssl.SSLContext`. It never retries: the caller decides (see ``redis_store``).

Failures are one of three kinds, and each leaves the connection closed:

* :class:`RespError`: Redis answered with an error reply (``WRONGTYPE``, ``NOPERM``,
  ``WRONGPASS``, ``READONLY``...); the command did not run.
* :class:`RespConnectionError`: the connection could not be opened or broke (refused, reset,
  closed by the server, TLS failure, garbage on the wire); the command may or may not have run.
* :class:`TimeoutError` (the built-in): no complete answer before the deadline; the command
  may or may not have run.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import TypeAlias

_TIMEOUT_SLACK_S = 0.001
"""A call whose remaining budget is within this of the socket's usual timeout keeps it as is:
changing a socket's timeout costs a system call, and the fast path should make none."""
_RECV_BYTES = 65536


class RespError(Exception):
    """Redis answered with an error reply; its first word (``WRONGTYPE``...) is :attr:`code`."""

    @property
    def code(self) -> str:
        """``ERR``, ``WRONGTYPE``, ``NOPERM``, ``WRONGPASS``, ``READONLY``, ..."""
        return str(self).partition(" ")[0]


Reply: TypeAlias = "bytes | int | list[Reply] | RespError | None"
"""A decoded reply: simple and bulk strings as bytes, integers, nil as None, arrays as lists;
error replies as :class:`RespError` values (raised by :meth:`RespConnection.call`)."""


class RespConnectionError(Exception):
    """The connection could not be opened or broke; the command may or may not have run."""


def encode_command(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings (pre-encode fixed commands once)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def encode_set_nx_px(key: bytes, value: bytes, ttl_ms: int) -> bytes:
    """``SET key value NX PX ttl_ms``, formatted in one step (the hot path)."""
    ttl = b"%d" % ttl_ms
    return b"*6\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nNX\r\n$2\r\nPX\r\n$%d\r\n%s\r\n" % (
        len(key),
        key,
        len(value),
        value,
        len(ttl),
        ttl,
    )


def encode_get(key: bytes) -> bytes:
    """``GET key``."""
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RespEndpoint:
    """Where and how to connect. ``password`` never appears in ``repr``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    db: int = 0
    ssl_context: ssl.SSLContext | None = None
    """TLS when set; the server's certificate is checked against ``host``."""
    connect_timeout_s: float = 0.05
    socket_timeout_s: float = 0.05
    """The usual per-read timeout (a call's deadline shortens it when it must)."""

    def __repr__(self) -> str:
        tls = "TLS" if self.ssl_context else "plaintext"
        return f"RespEndpoint({self.host}:{self.port}, db={self.db}, {tls})"

    def handshake(self) -> tuple[bytes, int]:
        """The commands sent on every new connection (``AUTH``, ``SELECT``) and their count."""
        commands = []
        if self.password is not None or self.username:
            password = (self.password or "").encode()
            if self.username:
                commands.append(encode_command(b"AUTH", self.username.encode(), password))
            else:
                commands.append(encode_command(b"AUTH", password))
        if self.db:
            commands.append(encode_command(b"SELECT", b"%d" % self.db))
        return b"".join(commands), len(commands)


class RespConnection:
    """One connection, opened on the first :meth:`call` and after any failure.

    Not thread-safe: one thread uses it at a time (the pool hands it out).
    """

    __slots__ = ("_endpoint", "_kernel_timeouts", "_sock", "_timeout")

    def __init__(self, endpoint: RespEndpoint) -> None:
        self._endpoint = endpoint
        self._sock: socket.socket | None = None
        self._timeout = 0.0
        self._kernel_timeouts = False
        """Plain TCP: a blocking socket with SO_RCVTIMEO/SO_SNDTIMEO, one system call per
        send or receive (Python's own timeouts add a poll() before each). TLS keeps Python's
        timeouts: the ssl module retries a read the kernel timed out."""

    @property
    def connected(self) -> bool:
        """True while a socket is open."""
        return self._sock is not None

    def call(self, payload: bytes, replies: int, deadline: float) -> list[Reply]:
        """Send ``payload`` (``replies`` pre-encoded commands, pipelined) and read every reply.

        ``deadline`` is a :func:`time.monotonic` instant. Raises :class:`RespError` for the
        first error reply (after reading them all), :class:`RespConnectionError` or
        :class:`TimeoutError`; on any exception the connection is closed.
        """
        try:
            if self._sock is None:
                self._connect(deadline)
            results = self._exchange(payload, replies, deadline)
        except (RespError, RespConnectionError, TimeoutError):
            self.close()
            raise
        except BlockingIOError as exc:  # SO_RCVTIMEO / SO_SNDTIMEO expired
            self.close()
            raise TimeoutError("no answer before the deadline") from exc
        except OSError as exc:  # refused, reset, broken pipe, TLS failure...
            self.close()
            raise RespConnectionError(_describe(exc)) from exc
        except BaseException:
            self.close()
            raise
        for result in results:
            if isinstance(result, RespError):
                self.close()
                raise result
        return results

    def close(self) -> None:
        """Close the socket (a blocked reader in another thread is woken up); idempotent."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):  # already reset, or never fully connected
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _connect(self, deadline: float) -> None:
        endpoint = self._endpoint
        timeout = min(endpoint.connect_timeout_s, deadline - time.monotonic())
        if timeout <= 0:
            raise TimeoutError("no time left to connect")
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.ssl_context is not None:
                # The handshake runs here, under the connect timeout.
                sock = endpoint.ssl_context.wrap_socket(sock, server_hostname=endpoint.host)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._timeout = timeout
        payload, count = endpoint.handshake()
        if count:
            for result in self._exchange(payload, count, deadline):
                if isinstance(result, RespError):
                    raise result
        if endpoint.ssl_context is None:
            sock.settimeout(None)
            self._kernel_timeouts = True
            self._set_kernel_timeout(sock, self._timeout)

    def _exchange(self, payload: bytes, replies: int, deadline: float) -> list[Reply]:
        sock = self._sock
        assert sock is not None
        self._fit_timeout(sock, deadline)
        sock.sendall(payload)
        results: list[Reply] = []
        buffer = b""
        position = 0
        while True:
            data = sock.recv(_RECV_BYTES)
            if not data:
                raise RespConnectionError("connection closed by the server")
            buffer = buffer + data if buffer else data
            while len(results) < replies:
                parsed = parse_reply(buffer, position)
                if parsed is None:
                    break
                value, position = parsed
                results.append(value)
            if len(results) == replies:
                if position != len(buffer):
                    raise RespConnectionError("protocol error: more replies than commands")
                return results
            self._fit_timeout(sock, deadline)

    def _fit_timeout(self, sock: socket.socket, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        usual = self._endpoint.socket_timeout_s
        wanted = usual if remaining > usual - _TIMEOUT_SLACK_S else remaining
        if wanted != self._timeout:
            if self._kernel_timeouts:
                self._set_kernel_timeout(sock, wanted)
            else:
                sock.settimeout(wanted)
            self._timeout = wanted

    def _set_kernel_timeout(self, sock: socket.socket, timeout_s: float) -> None:
        microseconds = max(1, math.ceil(timeout_s * 1e6))
        timeval = struct.pack("ll", microseconds // 1_000_000, microseconds % 1_000_000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self._timeout = timeout_s


def parse_reply(buffer: bytes, position: int) -> tuple[Reply, int] | None:
    """The reply starting at ``position`` and the position after it; None when ``buffer``
    does not hold all of it yet. Raises :class:`RespConnectionError` on bytes that are not
    RESP2."""
    end = buffer.find(b"\r\n", position)
    if end < 0:
        return None
    kind = buffer[position]
    line = buffer[position + 1 : end]
    after = end + 2
    try:
        if kind == 43:  # "+" simple string
            return line, after
        if kind == 36:  # "$" bulk string
            length = int(line)
            if length < 0:
                return None, after
            stop = after + length
            if len(buffer) < stop + 2:
                return None
            return buffer[after:stop], stop + 2
        if kind == 58:  # ":" integer
            return int(line), after
        if kind == 45:  # "-" error
            return RespError(line.decode("utf-8", "replace")), after
        if kind == 42:  # "*" array
            count = int(line)
            if count < 0:
                return None, after
            items: list[Reply] = []
            for _ in range(count):
                parsed = parse_reply(buffer, after)
                if parsed is None:
                    return None
                item, after = parsed
                items.append(item)
            return items, after
    except ValueError:
        pass
    raise RespConnectionError("protocol error: not a RESP2 reply")


def _describe(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc.strerror or exc}"
