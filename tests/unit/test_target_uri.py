"""Rebuilding the public target URI behind proxies: table-driven, pure."""

from __future__ import annotations

import pytest

from verifier.doors.target_uri import PublicUrlOptions, public_target_uri

NONE = PublicUrlOptions()
XFP = PublicUrlOptions(trusted_headers=frozenset({"x-forwarded-proto"}))
XF_BOTH = PublicUrlOptions(trusted_headers=frozenset({"x-forwarded-proto", "x-forwarded-host"}))
FWD = PublicUrlOptions(trusted_headers=frozenset({"forwarded"}))
ALL = PublicUrlOptions(
    trusted_headers=frozenset({"forwarded", "x-forwarded-proto", "x-forwarded-host"})
)
BASES = PublicUrlOptions(
    trusted_headers=frozenset({"x-forwarded-host"}),
    public_base_urls={
        "svc.internal:8080": "https://api.example.com/v1",
        "*": "https://www.example.com",
    },
)

CASES = [
    # (options, scheme, authority, path, headers, expected)
    (NONE, "http", "api.test", "/orders?x=1", {}, "http://api.test/orders?x=1"),
    (NONE, "https", "API.test:8443", "/a%2Fb", {}, "https://API.test:8443/a%2Fb"),
    # Forwarding headers are ignored unless trusted.
    (
        NONE,
        "http",
        "svc",
        "/o",
        {"x-forwarded-proto": ("https",), "x-forwarded-host": ("evil",)},
        "http://svc/o",
    ),
    (
        XFP,
        "http",
        "svc",
        "/o",
        {"x-forwarded-proto": ("https",), "x-forwarded-host": ("evil",)},
        "https://svc/o",
    ),
    (
        XF_BOTH,
        "http",
        "svc",
        "/o",
        {"x-forwarded-proto": ("HTTPS",), "x-forwarded-host": ("api.example.com",)},
        "https://api.example.com/o",
    ),
    # Several hops: the last value (from the proxy nearest to Envoy) counts.
    (
        XF_BOTH,
        "http",
        "svc",
        "/o",
        {"x-forwarded-proto": ("http, https",), "x-forwarded-host": ("evil", "api.example.com")},
        "https://api.example.com/o",
    ),
    # Unusable values are ignored.
    (
        XF_BOTH,
        "http",
        "svc",
        "/o",
        {"x-forwarded-proto": ("ftp",), "x-forwarded-host": ("a/b@c",)},
        "http://svc/o",
    ),
    (XF_BOTH, "http", "svc", "/o", {"x-forwarded-host": ("",)}, "http://svc/o"),
    # RFC 7239 Forwarded: last element, quoted values, case-insensitive names.
    (
        FWD,
        "http",
        "svc",
        "/o",
        {
            "forwarded": (
                "for=1.2.3.4;proto=http;host=evil, "
                'for=5.6.7.8;Proto=https;Host="api.example.com:8443"',
            )
        },
        "https://api.example.com:8443/o",
    ),
    (
        FWD,
        "http",
        "svc",
        "/o",
        {"forwarded": ('for="[2001:db8::1]:80";host="a,b";proto=https',)},
        "https://svc/o",
    ),
    (FWD, "http", "svc", "/o", {"forwarded": ("for=1.2.3.4",)}, "http://svc/o"),
    # Forwarded wins over X-Forwarded-*; X-Forwarded-* fills what Forwarded lacks.
    (
        ALL,
        "http",
        "svc",
        "/o",
        {
            "forwarded": ("proto=https",),
            "x-forwarded-proto": ("http",),
            "x-forwarded-host": ("api.example.com",),
        },
        "https://api.example.com/o",
    ),
    # A public base URL for the host wins over every header; "*" is the fallback.
    (
        BASES,
        "http",
        "svc.internal:8080",
        "/orders?q",
        {"x-forwarded-host": ("evil",)},
        "https://api.example.com/v1/orders?q",
    ),
    (BASES, "http", "SVC.internal:8080", "/", {}, "https://api.example.com/v1/"),
    (BASES, "http", "other", "/x", {}, "https://www.example.com/x"),
    # Not an absolute path: no target (the engine denies request_invalid).
    (NONE, "http", "svc", "*", {}, ""),
    (NONE, "http", "svc", "", {}, ""),
    (NONE, "http", "svc", "http://other/x", {}, ""),
]


@pytest.mark.parametrize(("options", "scheme", "authority", "path", "headers", "expected"), CASES)
def test_public_target_uri(
    options: PublicUrlOptions,
    scheme: str,
    authority: str,
    path: str,
    headers: dict[str, tuple[str, ...]],
    expected: str,
) -> None:
    assert public_target_uri(scheme, authority, path, headers, options) == expected


@pytest.mark.parametrize(
    ("scheme", "authority", "expected"),
    [
        ("http", "svc.internal.:8080", "https://api.example.com/v1/o"),
        ("http", "SVC.Internal.:08080", "https://api.example.com/v1/o"),
        ("http", "svc.internal:8081", "https://www.example.com/o"),
        ("http", "gw.internal.", "https://gw.example.com/o"),
        ("http", "gw.internal:80", "https://gw.example.com/o"),  # the scheme's default port
        ("https", "gw.internal:80", "https://www.example.com/o"),
        ("https", "tls.internal.", "https://tls.example.com/o"),  # configured as :443
        ("https", "tls.internal:443", "https://tls.example.com/o"),
        ("http", "tls.internal", "https://www.example.com/o"),
    ],
)
def test_public_base_urls_compare_hosts_as_routes_do(
    scheme: str, authority: str, expected: str
) -> None:
    """A host spelled with a trailing dot, in upper case or with its default port must not
    miss its public base URL: routes configured for the public host would not apply."""
    options = PublicUrlOptions(
        public_base_urls={
            "svc.internal:8080": "https://api.example.com/v1",
            "GW.internal.": "https://gw.example.com",
            "tls.internal:443": "https://tls.example.com",
            "*": "https://www.example.com",
        }
    )
    assert public_target_uri(scheme, authority, "/o", {}, options) == expected
