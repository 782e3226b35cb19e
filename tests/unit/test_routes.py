"""The per-route policy resolver: table-driven, pure."""

from __future__ import annotations

from typing import Any

import pytest

from verifier.domain.model import Mode, Policy, Profile, SenderConstraint
from verifier.domain.routes import RouteError, parse_routes

ROUTES: list[dict[str, Any]] = [
    {"host": "*", "path_prefix": "/", "mode": "require"},
    {"host": "*", "path_prefix": "/public", "mode": "off", "name": "public"},
    {"host": "*", "path_prefix": "/legacy", "mode": "allow-bearer"},
    {"host": "api.example.com", "path_prefix": "/legacy", "mode": "report-only"},
    {"host": "api.example.com", "path_prefix": "/legacy/admin", "mode": "require",
     "nonce_required": True},
    {"host": "other.example:8443", "path_prefix": "/", "mode": "report-only"},
]  # fmt: skip
TABLE = parse_routes(ROUTES, default=Policy(nonce_required=False))


@pytest.mark.parametrize(
    ("uri", "mode", "nonce", "name"),
    [
        ("https://x.example/orders", Mode.REQUIRE, False, "*/"),
        ("https://x.example/public", Mode.OFF, False, "public"),
        ("https://x.example/public/", Mode.OFF, False, "public"),
        ("https://x.example/public/img.png?x=1", Mode.OFF, False, "public"),
        ("https://x.example/publicity", Mode.REQUIRE, False, "*/"),  # whole segments only
        ("https://x.example/legacy/v1", Mode.ALLOW_BEARER, False, "*/legacy"),
        ("https://API.Example.com/legacy/v1", Mode.REPORT_ONLY, False, "api.example.com/legacy"),
        ("https://api.example.com:8443/legacy", Mode.REPORT_ONLY, False, "api.example.com/legacy"),
        (
            "https://api.example.com/legacy/admin/x",
            Mode.REQUIRE,
            True,
            "api.example.com/legacy/admin",
        ),
        (
            "https://api.example.com/legacy/x/../admin",
            Mode.REQUIRE,
            True,
            "api.example.com/legacy/admin",
        ),
        (
            "https://api.example.com/legacy/%61dmin",
            Mode.REQUIRE,
            True,
            "api.example.com/legacy/admin",
        ),
        ("https://other.example:8443/x", Mode.REPORT_ONLY, False, "other.example:8443/"),
        ("https://other.example/x", Mode.REQUIRE, False, "*/"),  # port must match when given
        # A path readable two ways takes the stricter route.
        ("https://x.example/public%2F..%2Forders", Mode.REQUIRE, False, "*/"),
        ("https://x.example/public/..%2f..%2Flegacy", Mode.ALLOW_BEARER, False, "*/legacy"),
        ("https://x.example//public", Mode.REQUIRE, False, "*/"),  # the stricter reading
        (
            "https://api.example.com/legacy%2Fadmin",
            Mode.REQUIRE,
            True,
            "api.example.com/legacy/admin",
        ),
        # Unparseable: the default (the engine then denies request_invalid).
        ("not a uri", Mode.REQUIRE, False, "default"),
        ("https://x.example/public\\..\\admin", Mode.REQUIRE, False, "default"),
    ],
)
def test_resolve(uri: str, mode: Mode, nonce: bool, name: str) -> None:
    route = TABLE.resolve(uri)
    assert (route.policy.mode, route.policy.nonce_required, route.name) == (mode, nonce, name)


def test_no_routes_means_require_with_the_global_nonce_setting() -> None:
    table = parse_routes([], default=Policy(nonce_required=True))
    route = table.resolve("https://x.example/")
    assert route.policy == Policy(Mode.REQUIRE, nonce_required=True)
    assert route.name == "default"


def test_route_nonce_defaults_to_the_global_setting() -> None:
    table = parse_routes(
        [{"path_prefix": "/a", "mode": "off"}], default=Policy(nonce_required=True)
    )
    assert table.resolve("https://x.example/a").policy == Policy(Mode.OFF, nonce_required=True)


def test_exact_host_beats_wildcard_for_the_same_prefix() -> None:
    table = parse_routes(
        [{"host": "*", "path_prefix": "/a", "mode": "off"},
         {"host": "h.example", "path_prefix": "/a", "mode": "report-only"}],
        default=Policy(),
    )  # fmt: skip
    assert table.resolve("http://h.example/a").policy.mode is Mode.REPORT_ONLY
    assert table.resolve("http://g.example/a").policy.mode is Mode.OFF


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"mode": "enforce"}, "routes[0].mode"),
        ({"host": "*.example.com"}, "routes[0].host"),
        ({"host": ""}, "routes[0].host"),
        ({"host": "h.example:99999"}, "routes[0].host"),
        ({"path_prefix": "api"}, "routes[0].path_prefix"),
        ({"path_prefix": "/a?b"}, "routes[0].path_prefix"),
        ({"path_prefix": "/a b"}, "routes[0].path_prefix"),
        ({"nonce_required": "yes"}, "routes[0].nonce_required"),
        ({"name": ""}, "routes[0].name"),
        ({"prefix": "/a"}, "routes[0].prefix"),
        ({"sender_constraint": "tls"}, "routes[0].sender_constraint"),
        ({"sender_constraint": True}, "routes[0].sender_constraint"),
        ({"profile": "fapi1"}, "routes[0].profile"),
        ({"profile": 2}, "routes[0].profile"),
        ({"issuers": "https://as.example"}, "routes[0].issuers"),
        ({"issuers": ["https://as.example", ""]}, "routes[0].issuers[1]"),
        ({"issuers": [" https://as.example"]}, "routes[0].issuers[0]"),
        ({"issuers": ["https://a.example", "https://a.example"]}, "routes[0].issuers[1]"),
        ({"issuers": [f"https://{i}.example" for i in range(65)]}, "routes[0].issuers"),
    ],
)
def test_invalid_entries_name_the_key(entry: dict[str, Any], key: str) -> None:
    with pytest.raises(RouteError) as caught:
        parse_routes([entry], default=Policy())
    assert caught.value.key == key


def test_sender_constraint_profile_and_issuers() -> None:
    table = parse_routes(
        [
            {"path_prefix": "/m", "sender_constraint": "mtls"},
            {"path_prefix": "/f", "sender_constraint": "either", "profile": "fapi2",
             "issuers": ["https://as.example"]},
        ],
        default=Policy(),
    )  # fmt: skip
    default = table.resolve("https://h.example/x").policy
    assert (default.sender_constraint, default.profile, default.issuers) == (
        SenderConstraint.DPOP, Profile.NONE, ())  # fmt: skip
    assert table.resolve("https://h.example/m/1").policy.sender_constraint is SenderConstraint.MTLS
    fapi = table.resolve("https://h.example/f").policy
    assert (fapi.sender_constraint, fapi.profile, fapi.issuers) == (
        SenderConstraint.EITHER, Profile.FAPI2, ("https://as.example",))  # fmt: skip


def test_duplicate_routes_are_refused() -> None:
    with pytest.raises(RouteError) as caught:
        parse_routes(
            [
                {"host": "H.example", "path_prefix": "/a/"},
                {"host": "h.example", "path_prefix": "/a"},
            ],
            default=Policy(),
        )
    assert caught.value.key == "routes[1]"
