"""HTTP to an authorization server: metadata, JWK Sets and token introspection.

One pooled :class:`IssuerHttp` client per issuer (a synchronous ``httpx.Client``, which may be
shared between threads): connections are kept alive between calls, at most ``max_connections``
are open at once, and a call blocks only its calling thread (a gRPC worker on a cache miss, or
a key source's refresh thread). Each network wait (a connection from the pool, connect, send,
every read) is bounded by ``timeout``, and the whole exchange is abandoned (``TimeoutError``)
at the first read that ends past ``timeout`` from its start: a server trickling its answer is
cut off. Redirects are not followed (a 3xx is an :class:`HTTPError`): the configured URLs must
be the real ones. Bodies are read up to :data:`MAX_DOCUMENT_BYTES`. The standard
``HTTPS_PROXY``/``NO_PROXY`` and ``SSL_CERT_FILE`` variables are honoured.
"""

from __future__ import annotations

import json
import ssl
import time
from base64 import b64encode
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx

MAX_DOCUMENT_BYTES = 512 * 1024
DEFAULT_TIMEOUT_S = 5.0


class HTTPError(Exception):
    """The server answered with a status other than 200 (redirects included)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP status {status}")
        self.status = status


class DocumentInvalid(ValueError):
    """The body is too large, not JSON, or not a JSON object."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A JSON object from the server and how long it may be cached.

    ``max_age``: seconds from ``Cache-Control: max-age`` (less ``Age``), 0 for ``no-store`` or
    ``no-cache``, None when the server said nothing.
    """

    document: dict[str, Any]
    max_age: float | None = None


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def endpoint_url_problem(url: str) -> str:
    """Why ``url`` may not be an issuer endpoint ("" when it may): https://, or http:// to
    loopback only (tokens and client secrets must not cross a network in the clear)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL"
    if not parts.hostname:
        return "must be an absolute https:// URL"
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return ""
    return "must be https:// (http only to loopback)"


def cache_max_age(cache_control: str, age: str = "") -> float | None:
    """Seconds a response may be reused (RFC 9111 §5.2.2.1, §5.1), or None when unspecified."""
    max_age: float | None = None
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age":
            value = value.strip().strip('"')
            if not value.isdigit():
                return 0.0  # RFC 9111 §4.2.1: an invalid max-age means stale
            max_age = float(value)
    if max_age is not None and age.strip().isdigit():
        max_age = max(0.0, max_age - float(age.strip()))
    return max_age


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DocumentInvalid("not JSON") from exc
    if not isinstance(document, dict):
        raise DocumentInvalid("not a JSON object")
    return document


class IssuerHttp:
    """A pooled, thread-safe HTTP client for one issuer's endpoints.

    ``timeout``: the deadline of one whole request in seconds, and the bound of each network
    wait within it; default 5. ``max_connections``: the pool's bound (default 20); further
    requests wait for a connection, within ``timeout``. ``ca_file``: a PEM bundle to verify
    the server with instead of the system's trust store.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_connections: int = 20,
        ca_file: str = "",
    ) -> None:
        verify: ssl.SSLContext | bool = True
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        self.timeout = timeout
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            verify=verify,
            headers={"Accept": "application/json", "User-Agent": "dpop-verifier"},
        )

    def get_json(self, url: str) -> Fetched:
        """GET ``url``: a JSON object with its cache lifetime; raise on any other answer."""
        return self._send(self._client.build_request("GET", url))

    def post_form(
        self, url: str, form: dict[str, str], *, basic_auth: tuple[str, str] | None = None
    ) -> Fetched:
        """POST ``form`` (application/x-www-form-urlencoded) to ``url``; a JSON object back."""
        headers = _basic(*basic_auth) if basic_auth is not None else None
        return self._send(self._client.build_request("POST", url, data=form, headers=headers))

    def _send(self, request: httpx.Request) -> Fetched:
        deadline = time.monotonic() + self.timeout
        response = self._client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise HTTPError(response.status_code)
            body = bytearray()
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no complete answer within {self.timeout} s")
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise DocumentInvalid(f"larger than {MAX_DOCUMENT_BYTES} bytes")
        finally:
            response.close()
        max_age = cache_max_age(
            response.headers.get("cache-control", ""), response.headers.get("age", "")
        )
        return Fetched(_parse_object(bytes(body)), max_age)

    def close(self) -> None:
        self._client.close()


def _basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: both parts form-urlencoded before the Basic encoding."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + b64encode(raw).decode("ascii")}
