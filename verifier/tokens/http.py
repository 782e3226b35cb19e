"""HTTP to an authorization server: metadata, JWK Sets and token introspection.

One pooled :class:`IssuerHttp` client per issuer (httpx, asyncio-native): connections are kept
alive between introspection calls, a call is cancellable and bounded by one overall deadline,
and nothing ever blocks the event loop or occupies a worker thread. Redirects are not followed
(a 3xx is an :class:`HTTPError`): the configured URLs must be the real ones. Bodies are read up
to :data:`MAX_DOCUMENT_BYTES`. The standard ``HTTPS_PROXY``/``NO_PROXY`` and ``SSL_CERT_FILE``
variables are honoured.
"""

from __future__ import annotations

import asyncio
import json
import ssl
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
    """A pooled HTTP client for one issuer's endpoints.

    ``timeout``: the deadline of one whole request in seconds (connect, send, read); default 5.
    ``max_connections``: the pool's bound (default 20); further requests wait for a connection.
    ``ca_file``: a PEM bundle to verify the server with instead of the system's trust store.
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
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            verify=verify,
            headers={"Accept": "application/json", "User-Agent": "dpop-verifier"},
        )

    async def get_json(self, url: str) -> Fetched:
        """GET ``url``: a JSON object with its cache lifetime; raise on any other answer."""
        return await self._send(self._client.build_request("GET", url))

    async def post_form(
        self, url: str, form: dict[str, str], *, basic_auth: tuple[str, str] | None = None
    ) -> Fetched:
        """POST ``form`` (application/x-www-form-urlencoded) to ``url``; a JSON object back."""
        headers = _basic(*basic_auth) if basic_auth is not None else None
        return await self._send(self._client.build_request("POST", url, data=form, headers=headers))

    async def _send(self, request: httpx.Request) -> Fetched:
        async with asyncio.timeout(self.timeout):
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code != 200:
                    raise HTTPError(response.status_code)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise DocumentInvalid(f"larger than {MAX_DOCUMENT_BYTES} bytes")
            finally:
                await response.aclose()
        max_age = cache_max_age(
            response.headers.get("cache-control", ""), response.headers.get("age", "")
        )
        return Fetched(_parse_object(bytes(body)), max_age)

    async def close(self) -> None:
        await self._client.aclose()


def _basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: both parts form-urlencoded before the Basic encoding."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + b64encode(raw).decode("ascii")}
