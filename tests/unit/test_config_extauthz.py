"""Settings of the ext_authz front door and the route table: validated at start-up, each
error naming the setting at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.app.doors import extauthz_options, route_table
from verifier.config import ConfigError, Settings, load_settings
from verifier.domain.model import Mode

SECRET = "s" * 40


def from_file(tmp_path: Path, text: str, **env: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(environ={"DPOP_CONFIG_FILE": str(path), **env})


def test_defaults() -> None:
    options = extauthz_options(Settings())
    names = options.identity_headers
    assert (names.jkt, names.subject, names.client_id, names.scope, names.issuer) == (
        "x-dpop-jkt", "x-auth-subject", "x-auth-client-id", "x-auth-scope", "x-auth-issuer",
    )  # fmt: skip
    assert names.report_only == "x-dpop-report-only"
    assert options.public_url.trusted_headers == frozenset()
    assert dict(options.public_url.public_base_urls) == {}
    assert options.routes.resolve("https://a.example/x").policy.mode is Mode.REQUIRE


def test_file_settings(tmp_path: Path) -> None:
    settings = from_file(
        tmp_path,
        f"""
nonce_secret = "{SECRET}"
upstream_header_subject = "X-User"
trusted_forwarded_headers = ["X-Forwarded-Proto", "forwarded"]
routes = [
  {{ host = "*", path_prefix = "/public", mode = "off" }},
  {{ host = "api.example.com", path_prefix = "/v1", mode = "report-only", nonce_required = true }},
]
[public_base_urls]
"svc.internal:8080" = "https://api.example.com/base/"
""",
    )
    options = extauthz_options(settings)
    assert options.identity_headers.subject == "x-user"
    assert options.public_url.trusted_headers == {"x-forwarded-proto", "forwarded"}
    assert dict(options.public_url.public_base_urls) == {
        "svc.internal:8080": "https://api.example.com/base"
    }
    route = route_table(settings).resolve("https://api.example.com/v1/orders")
    assert route.policy.mode is Mode.REPORT_ONLY and route.policy.nonce_required


def test_environment_sets_the_simple_ones() -> None:
    settings = load_settings(
        environ={
            "DPOP_UPSTREAM_HEADER_JKT": "x-client-key",
            "DPOP_UPSTREAM_HEADER_SCOPE": "",  # empty counts as unset
            "DPOP_TRUSTED_FORWARDED_HEADERS": "x-forwarded-host, x-forwarded-proto",
        }
    )
    assert settings.upstream_header_jkt == "x-client-key"
    assert settings.upstream_header_scope == "x-auth-scope"
    assert settings.trusted_forwarded_headers == ("x-forwarded-host", "x-forwarded-proto")


@pytest.mark.parametrize(
    ("text", "env", "setting"),
    [
        ('routes = [{ mode = "strict" }]', {}, "routes[0].mode"),
        ('routes = [{ path_prefix = "/a", mode = "off", nonce_required = true }]', {},
         "routes[0].nonce_required"),  # a nonce needs the secret
        ('upstream_header_jkt = "authorization"', {}, "DPOP_UPSTREAM_HEADER_JKT"),
        ('upstream_header_scope = "x auth"', {}, "DPOP_UPSTREAM_HEADER_SCOPE"),
        ('upstream_header_scope = "x-envoy-scope"', {}, "DPOP_UPSTREAM_HEADER_SCOPE"),
        ('upstream_header_issuer = "x-dpop-jkt"', {}, "DPOP_UPSTREAM_HEADER_ISSUER"),
        ("", {"DPOP_TRUSTED_FORWARDED_HEADERS": "x-real-ip"}, "DPOP_TRUSTED_FORWARDED_HEADERS"),
        ('public_base_urls = { "svc" = "ftp://x" }', {}, "public_base_urls.'svc'"),
        ('public_base_urls = { "svc" = "https://x/?q" }', {}, "public_base_urls.'svc'"),
        ('public_base_urls = { "a b" = "https://x" }', {}, "public_base_urls.'a b'"),
        ('public_base_urls = ["https://x"]', {}, "public_base_urls"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_setting(
    tmp_path: Path, text: str, env: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        from_file(tmp_path, text, **env)
    assert caught.value.setting.startswith(setting), caught.value


def test_disabling_an_identity_header() -> None:
    settings = load_settings(environ={}, overrides={"upstream_header_client_id": ""})
    assert settings.upstream_header_client_id == ""
    assert "x-auth-client-id" not in extauthz_options(settings).identity_headers.names()
