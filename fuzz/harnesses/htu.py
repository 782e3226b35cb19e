"""Target URIs: ``htu`` normalization (verifier/domain/uri.py) and the public URL a proxy's
request stands for (verifier/doors/target_uri.py), with the route it selects.

Input of :func:`normalize`: a URI. Input of the ``public_uri`` steps: lines ``scheme``,
``authority``, ``path``, then ``name: value`` header lines. Documented outcome:
:class:`~verifier.domain.uri.InvalidUri` from :func:`normalize_target_uri`;
:func:`public_target_uri` and ``RouteTable.resolve`` document none.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from fuzz.harness import Harness, text
from verifier.domain.model import Mode, Policy
from verifier.domain.routes import parse_routes
from verifier.domain.uri import InvalidUri, normalize_target_uri
from verifier.doors.target_uri import FORWARDING_HEADERS, PublicUrlOptions, public_target_uri

ROUTES = parse_routes(
    [
        {"path_prefix": "/legacy", "mode": "allow-bearer"},
        {"host": "api.example.com", "path_prefix": "/orders", "nonce_required": True},
        {"host": "api.example.com:8443", "path_prefix": "/report", "mode": "report-only"},
        {"host": "[::1]", "path_prefix": "/health", "mode": "off"},
    ],
    default=Policy(),
)
TRUST_FORWARDED = PublicUrlOptions(trusted_headers=frozenset(FORWARDING_HEADERS))
PUBLIC_BASE_URLS = PublicUrlOptions(
    public_base_urls={"internal:8080": "https://api.example.com/v1", "*": "https://edge.example"}
)


def normalize(data: bytes) -> None:
    """Normalization is idempotent and yields an absolute http(s) URI."""
    uri = text(data)
    ROUTES.resolve(uri)
    normalized = normalize_target_uri(uri)
    assert normalized.startswith(("http://", "https://")), normalized
    assert normalize_target_uri(normalized) == normalized, normalized


def request_parts(data: bytes) -> tuple[str, str, str, Mapping[str, tuple[str, ...]]]:
    """Scheme, authority, path and headers (lower-case names, every value in order)."""
    scheme, authority, path, *lines = [*text(data).split("\n"), "", "", ""]
    headers: dict[str, tuple[str, ...]] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = (*headers.get(name.strip().lower(), ()), value)
    return scheme, authority, path, headers


def public_uri(data: bytes, options: PublicUrlOptions) -> None:
    """The public URL rebuilt from Envoy's facts, its route, then its normalization."""
    scheme, authority, path, headers = request_parts(data)
    uri = public_target_uri(scheme, authority, path, headers, options)
    assert (uri == "") == (not path.startswith("/")), uri
    route = ROUTES.resolve(uri)
    assert isinstance(route.policy.mode, Mode)
    normalize_target_uri(uri)


HARNESS = Harness(
    "htu",
    (
        normalize,
        functools.partial(public_uri, options=TRUST_FORWARDED),
        functools.partial(public_uri, options=PUBLIC_BASE_URLS),
    ),
    (InvalidUri,),
)
