"""``normalize_target_uri``: the one audited URL normalization (RFC 3986 §6.2.2, §6.2.3)."""

from __future__ import annotations

import pytest

from verifier.domain.uri import MAX_URI_CHARS, InvalidUri, normalize_target_uri, remove_dot_segments

NORMALIZED = [
    # already normal
    ("https://server.example.com/token", "https://server.example.com/token"),
    ("http://localhost/", "http://localhost/"),
    # case of scheme and host (the path keeps its case)
    ("HTTPS://Server.Example.COM/Token", "https://server.example.com/Token"),
    ("HtTp://EXAMPLE.com/a", "http://example.com/a"),
    # default ports removed, others kept
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:80/a", "https://example.com:80/a"),
    ("http://example.com:443/a", "http://example.com:443/a"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),
    ("https://example.com:0443/a", "https://example.com/a"),
    ("https://example.com:/a", "https://example.com/a"),
    # empty path
    ("https://example.com", "https://example.com/"),
    ("https://example.com:8443", "https://example.com:8443/"),
    ("https://example.com?q=1", "https://example.com/"),
    # dot segments (RFC 3986 §5.2.4)
    ("https://example.com/a/./b", "https://example.com/a/b"),
    ("https://example.com/a/../b", "https://example.com/b"),
    ("https://example.com/a/b/../../c", "https://example.com/c"),
    ("https://example.com/../a", "https://example.com/a"),
    ("https://example.com/a/..", "https://example.com/"),
    ("https://example.com/a/.", "https://example.com/a/"),
    ("https://example.com/a/%2e%2E/b", "https://example.com/b"),
    # percent-encoding: hex case upper-cased, unreserved characters decoded
    ("https://example.com/a%2fb", "https://example.com/a%2Fb"),
    ("https://example.com/%7euser", "https://example.com/~user"),
    ("https://example.com/%41%62%2D%5F%2E", "https://example.com/Ab-_."),
    ("https://example.com/a%20b", "https://example.com/a%20b"),
    ("https://example.com/%e2%82%ac", "https://example.com/%E2%82%AC"),
    ("https://example.com/%3F%23", "https://example.com/%3F%23"),
    # trailing slash is significant
    ("https://example.com/a/", "https://example.com/a/"),
    # IPv4 and IPv6 literals
    ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
    ("https://[2001:DB8::1]/x", "https://[2001:db8::1]/x"),
    ("https://[2001:db8::1]:443/x", "https://[2001:db8::1]/x"),
    ("https://[::1]:8443/x", "https://[::1]:8443/x"),
    ("http://[::ffff:192.0.2.1]/", "http://[::ffff:192.0.2.1]/"),
    # query and fragment are dropped (RFC 9449 §4.3 (9))
    ("https://example.com/a?x=1&y=2", "https://example.com/a"),
    ("https://example.com/a#frag", "https://example.com/a"),
    ("https://example.com/a?x=1#frag", "https://example.com/a"),
    ("https://example.com/a?", "https://example.com/a"),
    ("https://example.com/a?x=%zz#%", "https://example.com/a"),
    # sub-delims and ":" "@" are legal path characters
    ("https://example.com/a:b@c!$&'()*+,;=", "https://example.com/a:b@c!$&'()*+,;="),
]

INVALID = [
    ("", "empty"),
    ("/token", "relative reference"),
    ("server.example.com/token", "no scheme"),
    ("//server.example.com/token", "network-path reference"),
    ("ftp://example.com/a", "non-http scheme"),
    ("wss://example.com/a", "non-http scheme"),
    ("urn:ietf:rfc:9449", "not hierarchical"),
    ("https:/example.com/a", "one slash"),
    ("https://user@example.com/a", "userinfo"),
    ("https://user:pass@example.com/a", "userinfo with password"),
    ("https://@example.com/a", "empty userinfo"),
    ("https:///a", "empty host"),
    ("https://:443/a", "port without host"),
    ("https://example.com:https/a", "port not a number"),
    ("https://example.com:65536/a", "port out of range"),
    ("https://example.com:-1/a", "negative port"),
    ("https://example.com:١٢٣/a", "non-ASCII digits"),
    ("https://exa mple.com/a", "space in host"),
    ("https://example.com/a b", "space in path"),
    ('https://example.com/a"b', "quote in path"),
    ("https://example.com/a<b>", "angle brackets in path"),
    ("https://example.com/a\\b", "backslash in path"),
    ("https://example.com/a\nb", "newline in path"),
    ("https://exämple.com/a", "non-ASCII host"),
    ("https://example.com/ä", "non-ASCII path"),
    ("https://example.com/a%", "truncated percent-encoding"),
    ("https://example.com/a%2", "truncated percent-encoding"),
    ("https://example.com/a%zz", "bad percent-encoding"),
    ("https://[::1/a", "unterminated IPv6 literal"),
    ("https://[::1]x/a", "junk after IPv6 literal"),
    ("https://[v1.x]/a", "IPvFuture"),
    ("https://[]/a", "empty IPv6 literal"),
    ("https://exa[mple.com/a", "bracket in host"),
    ("https://example.com" + "/a" * (MAX_URI_CHARS // 2), "too long"),
]


@pytest.mark.parametrize(("uri", "expected"), NORMALIZED)
def test_normalize_target_uri(uri: str, expected: str) -> None:
    assert normalize_target_uri(uri) == expected


@pytest.mark.parametrize(("uri", "expected"), NORMALIZED)
def test_normalization_is_idempotent(uri: str, expected: str) -> None:
    assert normalize_target_uri(expected) == expected


@pytest.mark.parametrize(("uri", "why"), INVALID, ids=[why for _, why in INVALID])
def test_invalid_uri_is_refused(uri: str, why: str) -> None:
    with pytest.raises(InvalidUri):
        normalize_target_uri(uri)


def test_longest_allowed_uri() -> None:
    prefix = "https://example.com/"
    uri = prefix + "a" * (MAX_URI_CHARS - len(prefix))
    assert normalize_target_uri(uri) == uri
    with pytest.raises(InvalidUri):
        normalize_target_uri(uri + "a")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # RFC 3986 §5.2.4 examples
        ("/a/b/c/./../../g", "/a/g"),
        ("mid/content=5/../6", "mid/6"),
        ("", ""),
        ("/", "/"),
        ("/..", "/"),
        ("/../../..", "/"),
        ("/./", "/"),
        ("/a//b", "/a//b"),
        ("/a/b/..", "/a/"),
        ("/a/...", "/a/..."),
        ("/a/..b", "/a/..b"),
    ],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected
