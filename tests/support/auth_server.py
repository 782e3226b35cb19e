"""A real authorization-server stand-in on 127.0.0.1: metadata, JWKS and introspection over HTTP.

It serves, under its issuer URL ``http://127.0.0.1:<port><path>``:

* ``/.well-known/oauth-authorization-server<path>`` (RFC 8414) and
  ``<path>/.well-known/openid-configuration`` (OIDC Discovery), from :attr:`metadata`;
* ``<path>/jwks``: :attr:`jwks`, with ``Cache-Control: <cache_control>`` when set;
* ``<path>/introspect`` (RFC 7662): POST, client authenticated as :attr:`client_auth` says,
  answering :attr:`introspection` [token] or ``{"active": false}``.

Every request is counted by path (:meth:`count`). Anything may be changed while it runs; the
handler reads the attributes under a lock. :meth:`stop` takes it off the network (connection
refused), :meth:`restart` brings it back on the same port.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt

from verifier.cli import mint
from verifier.tokens.client_auth import ASSERTION_TYPE

CLIENT_ID = "dpop-verifier"
CLIENT_SECRET = "s3cret: with spaces & symbols"


class AuthServer:
    """See the module docstring. ``path`` is the issuer's path (``/realms/demo``, or "")."""

    def __init__(self, path: str = "", *, port: int = 0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.signing_key = mint.generate_key("ES256")
        self.kid = "key-1"
        self.jwks: dict[str, Any] = mint.jwks_for(self.signing_key, kid=self.kid)
        self.cache_control = ""
        self.metadata_issuer: str | None = None  # None: the real issuer
        self.serve_rfc8414 = True
        self.dpop_algs: list[str] | None = None
        self.introspection: dict[str, dict[str, Any]] = {}
        self.introspection_default: dict[str, Any] = {"active": False}
        """The answer for tokens not in :attr:`introspection`."""
        self.introspection_delay = 0.0
        self.client_auth = "client_secret_basic"
        self.client_public_jwk: dict[str, Any] | None = None  # for private_key_jwt
        self.assertions: list[dict[str, Any]] = []
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.start()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        server = _Server(("127.0.0.1", self._port), _handler(self))
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Down: the port refuses connections and kept-alive ones are cut."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.cut_connections()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    restart = start

    # --- what it serves ----------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._port}{self.path}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/introspect"

    def metadata(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "issuer": self.metadata_issuer or self.issuer,
            "jwks_uri": self.jwks_uri,
            "introspection_endpoint": self.introspection_endpoint,
            "token_endpoint": f"{self.issuer}/token",
        }
        if self.dpop_algs is not None:
            document["dpop_signing_alg_values_supported"] = self.dpop_algs
        return document

    def count(self, suffix: str) -> int:
        """Requests so far whose path ends with ``suffix`` (``"/jwks"``, ``"/introspect"``)."""
        with self._lock:
            return sum(n for path, n in self.requests.items() if path.endswith(suffix))

    def token(
        self, *, jkt: str | None, key: mint.KeyPair | None = None, kid: str = "", **kw: Any
    ) -> str:
        """A JWT access token of this issuer, signed with ``key`` (default: its signing key)."""
        return mint.make_access_token(
            key or self.signing_key, issuer=self.issuer, jkt=jkt, kid=kid or self.kid, **kw
        )

    def opaque(self, token: str, **answer: Any) -> str:
        """Register an opaque ``token`` whose introspection answer is ``answer`` (active etc.)."""
        with self._lock:
            self.introspection[token] = answer
        return token

    # --- request handling --------------------------------------------------------------------

    def _get(self, path: str) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        if path == f"/.well-known/oauth-authorization-server{self.path}":
            return (200, self.metadata(), {}) if self.serve_rfc8414 else (404, None, {})
        if path == f"{self.path}/.well-known/openid-configuration":
            return 200, self.metadata(), {}
        if path == f"{self.path}/jwks":
            headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
            return 200, self.jwks, headers
        return 404, None, {}

    def _client_ok(self, headers: Any, form: dict[str, str]) -> bool:
        if self.client_auth == "client_secret_basic":
            raw = headers.get("Authorization", "")
            if not raw.startswith("Basic "):
                return False
            user, _, password = base64.b64decode(raw[6:]).decode().partition(":")
            return (unquote_plus(user), unquote_plus(password)) == (CLIENT_ID, CLIENT_SECRET)
        if self.client_auth == "client_secret_post":
            return (form.get("client_id"), form.get("client_secret")) == (CLIENT_ID, CLIENT_SECRET)
        if form.get("client_assertion_type") != ASSERTION_TYPE or self.client_public_jwk is None:
            return False
        try:
            claims = jwt.decode(
                form.get("client_assertion", ""),
                jwt.PyJWK(self.client_public_jwk).key,
                algorithms=["ES256", "RS256", "PS256", "EdDSA"],
                audience=self.issuer,
                issuer=CLIENT_ID,
            )
        except jwt.PyJWTError:
            return False
        self.assertions.append(claims)
        return bool(claims.get("sub") == CLIENT_ID and claims.get("jti"))

    def _post(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any] | None]:
        if path != f"{self.path}/introspect":
            return 404, None
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        if not self._client_ok(headers, form):
            return 401, {"error": "invalid_client"}
        if self.introspection_delay:
            time.sleep(self.introspection_delay)
        with self._lock:
            answer = self.introspection.get(form.get("token", ""), self.introspection_default)
        return 200, answer


class _Server(ThreadingHTTPServer):
    """Remembers its open connections so that going down cuts them too."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()


def _handler(server: AuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        wbufsize = -1  # the whole answer in one segment (see setup)

        def setup(self) -> None:
            super().setup()
            # As real servers do: without it, Nagle's algorithm and the client's delayed ACK
            # add ~40 ms to every keep-alive exchange.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _count(self) -> None:
            with server._lock:
                server.requests[self.path] += 1

        def _send(self, status: int, document: Any, headers: dict[str, str]) -> None:
            body = json.dumps(document).encode() if document is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_GET(self) -> None:
            self._count()
            with server._lock:
                status, document, headers = server._get(self.path)
            self._send(status, document, headers)

        def do_POST(self) -> None:
            self._count()
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, document = server._post(self.path, self.headers, body)
            self._send(status, document, {})

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def auth_server(path: str = "") -> Iterator[AuthServer]:
    """An :class:`AuthServer` for the duration of a test."""
    server = AuthServer(path)
    try:
        yield server
    finally:
        server.stop()
