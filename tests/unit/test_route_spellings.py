"""No spelling of a protected host or path reaches a weaker route (verifier/domain/routes.py).

The route table of the security report: everything is ``off`` except one host and one path.
Each request below must select ``require``, through the table, through the config file and
Envoy's ``CheckRequest``, and as a property over generated spellings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.helpers import assert_denied, make_verifier
from verifier._generated.envoy.service.auth.v3 import attribute_context_pb2 as attrs
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier.app.doors import extauthz_options
from verifier.config import load_settings
from verifier.domain.model import Mode, Policy
from verifier.domain.reasons import Reason
from verifier.domain.routes import READINGS, Reading, parse_routes, read_path, strictness
from verifier.doors.extauthz_facts import check_request_facts, request_headers

REPORTED_CONFIG = """
[[routes]]
host = "*"
path_prefix = "/"
mode = "off"

[[routes]]
host = "api.example.com"
path_prefix = "/"
mode = "require"

[[routes]]
host = "*"
path_prefix = "/admin"
mode = "require"
"""
REPORTED: list[dict[str, Any]] = [
    {"host": "*", "path_prefix": "/", "mode": "off"},
    {"host": "api.example.com", "path_prefix": "/", "mode": "require"},
    {"host": "*", "path_prefix": "/admin", "mode": "require"},
]
TABLE = parse_routes(REPORTED, default=Policy())

# The requests of the report, and their neighbours.
PROTECTED = [
    "https://api.example.com./x",
    "https://API.Example.COM./x",
    "https://api.example.com.:443/x",
    "http://api.example.com.:80/x",
    "https://api.example.com:8443/x",  # a route host without a port matches every port
    "https://a.test/admin;jsessionid=x/users",
    "https://a.test/admin;/users",
    "https://a.test/ADMIN/users",
    "https://a.test/admin%00/users",
    "https://a.test/admin/users%00",
    "https://a.test/Admin",
    "https://a.test/admin;",
    "https://a.test/%61dmin/users",
    "https://a.test/%2561dmin/users",  # decoded twice
    "https://a.test/admin%3Bx/users",  # ";" encoded, then stripped
    "https://a.test/public/..;/admin/users",  # "..;" is ".." once the parameter is gone
    "https://a.test/public/%2e%2e;x/admin",
    "https://a.test/public%2F..%2Fadmin",
    "https://a.test//admin/users",
    "https://a.test/;x/admin",
    "https://a.test/ADM%C4%B0N/users",  # U+0130 lower-cases to "i" (Java, .NET)
    "https://a.test/adm%C4%B1n/users",  # U+0131 (dotless i) upper-cases to "I"
    "https://a.test/admin%C0%AE",  # not UTF-8 (an overlong "."): no reliable reading
    "https://a.test/x/%252e%252e/admin",
]
UNPROTECTED = [
    "https://a.test/",
    "https://a.test/public/x",
    "https://a.test/administrator",
    "https://a.test/admin-x/y",
    "https://a.test/x/admin",
    "https://b.example.com/x",
    "https://api.example.com.evil/x",
    "https://a.test/Public;v=1/x",
]


@pytest.mark.parametrize("uri", PROTECTED)
def test_every_spelling_of_a_protected_route_selects_it(uri: str) -> None:
    assert TABLE.resolve(uri).policy.mode is Mode.REQUIRE


@pytest.mark.parametrize("uri", UNPROTECTED)
def test_other_paths_keep_their_route(uri: str) -> None:
    assert TABLE.resolve(uri).policy.mode is Mode.OFF


def _check_request(host: str, path: str) -> pb.CheckRequest:
    http = attrs.AttributeContext.HttpRequest(method="GET", scheme="https", host=host, path=path)
    return pb.CheckRequest(
        attributes=attrs.AttributeContext(request=attrs.AttributeContext.Request(http=http))
    )


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("api.example.com.", "/x"),
        ("a.test", "/admin;jsessionid=x/users"),
        ("a.test", "/admin;/users"),
        ("a.test", "/ADMIN/users"),
        ("a.test", "/admin%00/users"),
    ],
)
def test_the_reported_requests_without_credentials_are_denied(
    tmp_path: Path, host: str, path: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(REPORTED_CONFIG, encoding="utf-8")
    options = extauthz_options(load_settings(environ={"DPOP_CONFIG_FILE": str(config)}))
    check = _check_request(host, path)
    headers = request_headers(check.attributes.request.http)
    facts = check_request_facts(
        check, headers, routes=options.routes, public_url=options.public_url
    )
    assert facts.policy.mode is Mode.REQUIRE
    assert_denied(make_verifier().verify(facts), Reason.AUTHORIZATION_MISSING)


# --- hosts: the same canonical form for the request and the configured route ---------------


@pytest.mark.parametrize(
    ("route_host", "uri", "matches"),
    [
        ("h.example", "https://H.EXAMPLE./", True),
        ("h.example.", "https://h.example/", True),
        ("H.Example.", "https://h.example.:8443/", True),
        ("h.example", "https://h.example../", False),  # one trailing dot only
        ("h.example:443", "https://h.example/", True),  # the scheme's default port
        ("h.example:443", "https://h.example.:443/", True),
        ("h.example:443", "http://h.example:443/", True),
        ("h.example:443", "http://h.example/", False),
        ("h.example:80", "http://h.example./", True),
        ("h.example:8443", "https://h.example:08443/", True),
        ("h.example:8443", "https://h.example/", False),
        ("[2001:db8::1]:443", "https://[2001:DB8::1]/", True),
    ],
)
def test_route_hosts(route_host: str, uri: str, matches: bool) -> None:
    table = parse_routes(
        [{"path_prefix": "/", "mode": "off"}, {"host": route_host, "mode": "require"}],
        default=Policy(),
    )
    assert (table.resolve(uri).policy.mode is Mode.REQUIRE) is matches


# --- "stricter" -----------------------------------------------------------------------------


def test_strictness_orders_modes_then_the_nonce() -> None:
    order = [
        Policy(Mode.OFF),
        Policy(Mode.OFF, nonce_required=True),
        Policy(Mode.REPORT_ONLY),
        Policy(Mode.REPORT_ONLY, nonce_required=True),
        Policy(Mode.ALLOW_BEARER),
        Policy(Mode.ALLOW_BEARER, nonce_required=True),
        Policy(Mode.REQUIRE),
        Policy(Mode.REQUIRE, nonce_required=True),
    ]
    assert sorted(reversed(order), key=strictness) == order


def test_an_ambiguous_request_takes_the_stricter_nonce_setting() -> None:
    table = parse_routes(
        [
            {"path_prefix": "/", "mode": "require"},
            {"path_prefix": "/admin", "mode": "require", "nonce_required": True},
        ],
        default=Policy(),
    )
    assert table.resolve("https://a.test/Admin/x").policy == Policy(Mode.REQUIRE, True)
    assert table.resolve("https://a.test/other/x").policy == Policy(Mode.REQUIRE, False)


def test_the_longest_prefix_still_wins_within_one_reading() -> None:
    table = parse_routes(
        [
            {"path_prefix": "/", "mode": "off"},
            {"path_prefix": "/admin", "mode": "require"},
            {"path_prefix": "/admin/health", "mode": "off"},
        ],
        default=Policy(),
    )
    assert table.resolve("https://a.test/admin/health/live").policy.mode is Mode.OFF
    assert table.resolve("https://a.test/admin/%68ealth/live").policy.mode is Mode.OFF
    # Read with its parameter, the path is under /admin: the stricter route wins.
    assert table.resolve("https://a.test/admin/health;x/live").policy.mode is Mode.REQUIRE


def test_configured_prefixes_are_read_like_the_request() -> None:
    table = parse_routes(
        [{"path_prefix": "/", "mode": "off"}, {"path_prefix": "/Admin", "mode": "require"}],
        default=Policy(),
    )
    assert table.resolve("https://a.test/admin/x").policy.mode is Mode.REQUIRE
    assert table.resolve("https://a.test/ADMIN;x/x").policy.mode is Mode.REQUIRE


def test_an_unreadable_path_gets_the_strictest_route_of_its_host() -> None:
    table = parse_routes(
        [
            {"path_prefix": "/", "mode": "report-only"},
            {"path_prefix": "/a", "mode": "allow-bearer", "nonce_required": True},
            {"host": "other.test", "path_prefix": "/", "mode": "off"},
        ],
        default=Policy(),
    )
    assert table.resolve("https://a.test/x%00").policy == Policy(Mode.ALLOW_BEARER, True)
    # No route of the host covers every path: the default is one of its possible routes.
    only_a = parse_routes([{"path_prefix": "/a", "mode": "off"}], default=Policy())
    assert only_a.resolve("https://a.test/x%0A").policy.mode is Mode.REQUIRE


@pytest.mark.parametrize(
    "prefix", ["/a%00", "/a%C0%AE", "/%2525252541"], ids=["nul", "not-utf8", "encoded-4-times"]
)
def test_an_unreadable_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"routes\[0\]\.path_prefix"):
        parse_routes([{"path_prefix": prefix}], default=Policy())


@pytest.mark.parametrize(
    ("path", "reading", "expected"),
    [
        ("/a;b/c;d", Reading(params=True), "/a/c"),
        ("/a/..;/b", Reading(params=True), "/b"),
        ("/a%2Fb%5Cc", Reading(decode=True), "/a/b/c"),
        ("/a%253B/b", Reading(decode=True, params=True), "/a/b"),
        ("/a%00", Reading(decode=True), None),
        ("/a%FF", Reading(decode=True), None),
        ("//a///b", Reading(merge=True), "/a/b"),
        ("/A/B%2F", Reading(fold=True), "/a/b%2f"),
        ("/%C5%BFecret", Reading(decode=True, fold=True), "/secret"),  # U+017F upper-cases to "S"
    ],
)
def test_read_path(path: str, reading: Reading, expected: str | None) -> None:
    assert read_path(path, reading) == expected


def test_the_exact_reading_comes_first() -> None:
    assert READINGS[0] == Reading() and len(set(READINGS)) == 16


# --- the property ---------------------------------------------------------------------------

_UNRESERVED = "abcdefghijklmnopqrstuvwxyz0123456789-._~"


@st.composite
def _spelled_segment(draw: st.DrawFn, segment: str) -> str:
    """``segment`` with letters in any case, unreserved characters percent-encoded, and
    ``;params`` or ``%00`` appended."""
    out = []
    for char in segment:
        char = draw(st.sampled_from([char.lower(), char.upper()]))
        if draw(st.integers(0, 3)) == 0:
            char = draw(st.sampled_from(["%{:02x}", "%{:02X}"])).format(ord(char))
        out.append(char)
    text = "".join(out)
    suffix = draw(st.sampled_from(["", "", ";", ";jsessionid=x", ";a=1;b", "%00", "%3Bx"]))
    return text + suffix


@st.composite
def _spelled_path(draw: st.DrawFn, segments: list[str]) -> str:
    """A path made of ``segments``, each spelled, with dot segments and repeated or encoded
    slashes in between."""
    path = ""
    for segment in segments:
        separator = draw(st.sampled_from(["/", "/", "//", "/./", "/zz/../", "/zz/..;/"]))
        if path and draw(st.integers(0, 5)) == 0:
            separator = "%2F"
        path += separator + draw(_spelled_segment(segment))
    return path


_TAIL = st.lists(st.text(alphabet=_UNRESERVED.replace(".", ""), min_size=1, max_size=6), max_size=3)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), tail=_TAIL, trailing_slash=st.booleans())
def test_no_spelling_of_a_protected_path_selects_a_weaker_route(
    data: st.DataObject, tail: list[str], trailing_slash: bool
) -> None:
    path = data.draw(_spelled_path(["admin", *tail])) + ("/" if trailing_slash else "")
    host = data.draw(st.sampled_from(["a.test", "A.Test", "a.test.", "a.test:443", "a.test.:443"]))
    assert TABLE.resolve(f"https://{host}{path}").policy.mode is Mode.REQUIRE


@settings(max_examples=300, deadline=None)
@given(data=st.data(), tail=_TAIL)
def test_no_spelling_of_a_protected_host_selects_a_weaker_route(
    data: st.DataObject, tail: list[str]
) -> None:
    host = "".join(data.draw(st.sampled_from([c.lower(), c.upper()])) for c in "api.example.com")
    host += data.draw(st.sampled_from(["", ".", ":443", ".:443", ":8443"]))
    path = data.draw(_spelled_path(tail)) if tail else "/"
    assert TABLE.resolve(f"https://{host}{path}").policy.mode is Mode.REQUIRE


@settings(max_examples=200, deadline=None)
@given(segments=st.lists(st.text(alphabet="abcdefghij0123456789-_", min_size=1), min_size=1))
def test_plain_paths_elsewhere_keep_the_weak_route(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    assert TABLE.resolve(f"https://a.test{path}").policy.mode is Mode.OFF
