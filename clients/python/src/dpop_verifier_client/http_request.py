"""Build a ``VerifyRequest`` from the HTTP request a Python web application received.

The verifier compares the proof's ``htu`` with the URL the *client* used. Behind a proxy or
load balancer that URL is not what the application sees; pass ``public_origin`` (for example
``"https://api.example.com"``) rather than trusting ``X-Forwarded-*`` headers a client can set.
When the proxy also strips a path prefix (``/api/orders`` arrives as ``/orders``), include it:
``"https://api.example.com/api"``.

Mounted under a sub-path the full path is kept: WSGI's ``SCRIPT_NAME`` + ``PATH_INFO``, ASGI's
``raw_path`` (or ``root_path`` + ``path``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit

from dpop_verifier_client._generated.dpop.verifier.v1.verifier_pb2 import VerifyRequest

# RFC 3986 pchar minus the unreserved set (never quoted): keep what is already legal in a path.
_PATH_SAFE = "/:@!$&'()*+,;=%"


def build_request(
    method: str,
    target_uri: str,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    *,
    client_address: str = "",
    route: str = "",
    proof_only: bool = False,
) -> VerifyRequest:
    """A request from a method, the full target URI and the request headers.

    ``headers`` are (name, value) pairs in the order received (names in any case), or a
    mapping. Every ``Authorization`` and ``DPoP`` value is passed on unjoined, so that the
    verifier can reject duplicates.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    authorization: list[str] = []
    dpop: list[str] = []
    for name, value in pairs:
        lowered = name.lower()
        if lowered == "authorization":
            authorization.append(value)
        elif lowered == "dpop":
            dpop.append(value)
    return VerifyRequest(
        method=method,
        target_uri=target_uri,
        authorization=authorization,
        dpop=dpop,
        client_address=client_address,
        route=route,
        proof_only=proof_only,
    )


def check_public_origin(public_origin: str) -> str:
    """``public_origin`` without a trailing slash; raises ``ValueError`` unless it is
    ``http(s)://host[:port]`` optionally followed by a path prefix, with no query, fragment or
    user info."""
    parts = urlsplit(public_origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not _port_is_valid(parts)
        or "@" in parts.netloc
        or "?" in public_origin
        or "#" in public_origin
    ):
        raise ValueError(
            f"public_origin must look like https://api.example.com[/prefix]: {public_origin!r}"
        )
    return public_origin.rstrip("/")


def _port_is_valid(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - raises ValueError unless the port is a number in range
    except ValueError:
        return False
    return True


def request_from_wsgi(
    environ: Mapping[str, Any],
    *,
    public_origin: str | None = None,
    route: str = "",
    proof_only: bool = False,
) -> VerifyRequest:
    """A request from a WSGI ``environ`` (PEP 3333).

    The URL is rebuilt as PEP 3333 describes (``wsgi.url_scheme``, ``HTTP_HOST`` or
    ``SERVER_NAME``/``SERVER_PORT``, ``SCRIPT_NAME`` + ``PATH_INFO``, ``QUERY_STRING``).
    WSGI servers may join repeated headers with commas; the verifier then denies the request
    as ``authorization_multiple``/``proof_multiple``, which is the safe outcome.
    """
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    origin = (
        check_public_origin(public_origin)
        if public_origin
        else f"{scheme}://{_wsgi_authority(environ, scheme)}"
    )
    # PEP 3333: path strings are the raw bytes decoded as latin-1.
    raw_path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
    target = origin + quote(raw_path, safe=_PATH_SAFE)
    if environ.get("QUERY_STRING"):
        target += "?" + environ["QUERY_STRING"]
    headers = [
        (name, environ[key])
        for name, key in (("authorization", "HTTP_AUTHORIZATION"), ("dpop", "HTTP_DPOP"))
        if key in environ
    ]
    return build_request(
        str(environ["REQUEST_METHOD"]),
        target,
        headers,
        client_address=str(environ.get("REMOTE_ADDR", "")),
        route=route,
        proof_only=proof_only,
    )


def _wsgi_authority(environ: Mapping[str, Any], scheme: str) -> str:
    if environ.get("HTTP_HOST"):
        return str(environ["HTTP_HOST"])
    host, port = str(environ["SERVER_NAME"]), str(environ.get("SERVER_PORT", ""))
    default = "443" if scheme == "https" else "80"
    return host if port in ("", default) else f"{host}:{port}"


def request_from_asgi(
    scope: Mapping[str, Any],
    *,
    public_origin: str | None = None,
    route: str = "",
    proof_only: bool = False,
) -> VerifyRequest:
    """A request from an ASGI HTTP ``scope``.

    Uses ``raw_path`` (the path bytes the client sent) when the server provides it, else
    ``root_path`` + ``path``. ASGI keeps repeated headers apart, so duplicates reach the
    verifier as separate values.
    """
    if scope.get("type") != "http":
        raise ValueError(f"not an ASGI http scope: type={scope.get('type')!r}")
    headers = [
        (bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in scope["headers"]
    ]
    scheme = str(scope.get("scheme", "http"))
    origin = (
        check_public_origin(public_origin)
        if public_origin
        else f"{scheme}://{_asgi_authority(scope, headers, scheme)}"
    )
    target = origin + _asgi_path(scope)
    if scope.get("query_string"):
        target += "?" + bytes(scope["query_string"]).decode("latin-1")
    client = scope.get("client")
    return build_request(
        str(scope["method"]),
        target,
        headers,
        client_address=str(client[0]) if client else "",
        route=route,
        proof_only=proof_only,
    )


def _asgi_authority(scope: Mapping[str, Any], headers: list[tuple[str, str]], scheme: str) -> str:
    for name, value in headers:
        if name.lower() == "host":
            return value
    server = scope.get("server")
    if not server:
        raise ValueError("ASGI scope has neither a Host header nor 'server'")
    host, port = server[0], server[1]
    default = 443 if scheme == "https" else 80
    return str(host) if port in (None, default) else f"{host}:{port}"


def _asgi_path(scope: Mapping[str, Any]) -> str:
    raw = scope.get("raw_path")
    if raw:
        return quote(bytes(raw), safe=_PATH_SAFE)
    root, path = str(scope.get("root_path", "")), str(scope["path"])
    if root and not path.startswith(root):  # ASGI servers disagree on whether path has it
        path = root + path
    return quote(path.encode("utf-8"), safe=_PATH_SAFE)
