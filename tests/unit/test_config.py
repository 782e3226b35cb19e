"""Settings: precedence, validation that names the setting, secrets kept out of sight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifier.config import (
    DEFAULT_ALGS,
    OPTIONS,
    ConfigError,
    IssuerSettings,
    Settings,
    load_settings,
    options_markdown,
)

SECRET = "s" * 40


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert s.server.listen == "127.0.0.1:50051"
    assert s.replay.replay_url == "memory://"
    assert s.replay.replay_timeout_ms == 50
    assert s.proof.proof_algs == DEFAULT_ALGS
    assert "none" not in s.proof.proof_algs
    assert s.server.shutdown_grace_seconds == 10.0
    assert s.issuers == ()


def test_every_option_has_an_env_name_and_help() -> None:
    settings_fields = {"config_file"} | {
        name for section in Settings.SECTIONS.values() for name in section.__dataclass_fields__
    }
    for option in OPTIONS:
        assert option.env == "DPOP_" + option.name.upper()
        assert option.help
        assert option.name in settings_fields or option.name.endswith("_file")
    assert "DPOP_REPLAY_TIMEOUT_MS" in options_markdown()
    assert "| `DPOP_LISTEN` | `127.0.0.1:50051` |" in options_markdown()


def test_environment_values_are_parsed() -> None:
    s = load_settings(
        environ={
            "DPOP_LISTEN": "0.0.0.0:6000",
            "DPOP_REPLAY_TIMEOUT_MS": "75",
            "DPOP_NONCE_REQUIRED": "yes",
            "DPOP_NONCE_SECRET": SECRET,
            "DPOP_PROOF_ALGS": "ES256, EdDSA,ES256",
            "DPOP_SHUTDOWN_GRACE_SECONDS": "2.5",
            "DPOP_LOG_LEVEL": "debug",
            "DPOP_HEALTH_LISTEN": "",  # empty counts as unset
        }
    )
    assert s.server.listen == "0.0.0.0:6000"
    assert s.replay.replay_timeout_ms == 75
    assert s.proof.nonce_required is True
    assert s.proof.nonce_secret == SECRET.encode()
    assert s.proof.proof_algs == ("ES256", "EdDSA")
    assert s.server.shutdown_grace_seconds == 2.5
    assert s.log.log_level == "DEBUG"
    assert s.server.health_listen == ""


def test_precedence_cli_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = write(
        tmp_path / "dpop.toml",
        'listen = "127.0.0.1:1111"\nreplay_timeout_ms = 11\nmax_jti_chars = 100\n',
    )
    env = {
        "DPOP_CONFIG_FILE": str(config),
        "DPOP_LISTEN": "127.0.0.1:2222",
        "DPOP_REPLAY_TIMEOUT_MS": "22",
    }
    s = load_settings({"listen": "127.0.0.1:3333"}, environ=env)
    assert s.server.listen == "127.0.0.1:3333"  # CLI
    assert s.replay.replay_timeout_ms == 22  # environment
    assert s.proof.max_jti_chars == 100  # file
    assert s.proof.max_proof_bytes == 8192  # default
    assert s.config_file == str(config)


def test_cli_config_file_wins_over_env(tmp_path: Path) -> None:
    env_file = write(tmp_path / "env.toml", "max_jti_chars = 1\n")
    cli_file = write(tmp_path / "cli.json", json.dumps({"max_jti_chars": 2}))
    s = load_settings({"config_file": str(cli_file)}, environ={"DPOP_CONFIG_FILE": str(env_file)})
    assert s.proof.max_jti_chars == 2


def test_json_file_with_issuers_and_routes(tmp_path: Path) -> None:
    jwks = write(tmp_path / "jwks.json", '{"keys": []}')
    config = write(
        tmp_path / "dpop.json",
        json.dumps(
            {
                "issuers": [
                    {"issuer": "https://as.example", "audience": "api", "jwks_file": "jwks.json"},
                    {
                        "issuer": "https://other.example",
                        "jwks_uri": "https://other.example/jwks",
                        "algs": ["ES256"],
                    },
                ],
                "routes": [{"path_prefix": "/admin", "mode": "require"}],
            }
        ),
    )
    s = load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    assert s.issuers == (
        IssuerSettings(issuer="https://as.example", audience="api", jwks_file=str(jwks)),
        IssuerSettings(
            issuer="https://other.example", jwks_uri="https://other.example/jwks", algs=("ES256",)
        ),
    )
    assert s.issuers[1].audience is None
    assert s.issuers[0].algs == DEFAULT_ALGS
    assert s.doors.routes[0]["mode"] == "require"


def test_toml_file_with_issuers(tmp_path: Path) -> None:
    write(tmp_path / "jwks.json", '{"keys": []}')
    config = write(
        tmp_path / "dpop.toml",
        'proof_algs = ["ES256"]\nallow_explain = true\n\n'
        '[[issuers]]\nissuer = "https://as.example"\njwks_file = "jwks.json"\n',
    )
    s = load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    assert s.proof.proof_algs == ("ES256",)
    assert s.doors.allow_explain is True
    assert s.issuers[0].jwks_file == str(tmp_path / "jwks.json")


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DPOP_LISTEN": "nohost"}, "DPOP_LISTEN"),
        ({"DPOP_LISTEN": "127.0.0.1:70000"}, "DPOP_LISTEN"),
        ({"DPOP_LISTEN": ":::50051"}, "DPOP_LISTEN"),
        ({"DPOP_HEALTH_LISTEN": "127.0.0.1:x"}, "DPOP_HEALTH_LISTEN"),
        ({"DPOP_HEALTH_LISTEN": "127.0.0.1:50051"}, "DPOP_HEALTH_LISTEN"),
        ({"DPOP_METRICS_LISTEN": "[::1:9000"}, "DPOP_METRICS_LISTEN"),
        ({"DPOP_REPLAY_URL": "http://redis:6379"}, "DPOP_REPLAY_URL"),
        ({"DPOP_REPLAY_URL": "redis://"}, "DPOP_REPLAY_URL"),
        ({"DPOP_REPLAY_URL": "memory://somewhere"}, "DPOP_REPLAY_URL"),
        ({"DPOP_REPLAY_TIMEOUT_MS": "fast"}, "DPOP_REPLAY_TIMEOUT_MS"),
        ({"DPOP_REPLAY_TIMEOUT_MS": "0"}, "DPOP_REPLAY_TIMEOUT_MS"),
        ({"DPOP_MEMORY_REPLAY_MAX_ENTRIES": "0"}, "DPOP_MEMORY_REPLAY_MAX_ENTRIES"),
        ({"DPOP_PROOF_ALGS": "none"}, "DPOP_PROOF_ALGS"),
        ({"DPOP_PROOF_ALGS": "ES256,HS256"}, "DPOP_PROOF_ALGS"),
        ({"DPOP_PROOF_ALGS": "ES999"}, "DPOP_PROOF_ALGS"),
        ({"DPOP_PROOF_ALGS": " , "}, "DPOP_PROOF_ALGS"),
        ({"DPOP_IAT_MAX_AGE_SECONDS": "0"}, "DPOP_IAT_MAX_AGE_SECONDS"),
        ({"DPOP_IAT_MAX_SKEW_SECONDS": "-1"}, "DPOP_IAT_MAX_SKEW_SECONDS"),
        ({"DPOP_TOKEN_LEEWAY_SECONDS": "-1"}, "DPOP_TOKEN_LEEWAY_SECONDS"),
        ({"DPOP_MAX_PROOF_BYTES": "0"}, "DPOP_MAX_PROOF_BYTES"),
        ({"DPOP_MAX_TOKEN_BYTES": "1.5"}, "DPOP_MAX_TOKEN_BYTES"),
        ({"DPOP_MAX_JTI_CHARS": "0"}, "DPOP_MAX_JTI_CHARS"),
        ({"DPOP_NONCE_REQUIRED": "maybe"}, "DPOP_NONCE_REQUIRED"),
        ({"DPOP_NONCE_REQUIRED": "true"}, "DPOP_NONCE_SECRET"),
        ({"DPOP_NONCE_SECRET": "short"}, "DPOP_NONCE_SECRET"),
        ({"DPOP_NONCE_PREVIOUS_SECRET": SECRET}, "DPOP_NONCE_PREVIOUS_SECRET"),
        ({"DPOP_NONCE_LIFETIME_SECONDS": "0"}, "DPOP_NONCE_LIFETIME_SECONDS"),
        ({"DPOP_TLS_CERT_FILE": "/nonexistent/cert.pem"}, "DPOP_TLS_KEY_FILE"),
        ({"DPOP_TLS_CLIENT_CA_FILE": "/nonexistent/ca.pem"}, "DPOP_TLS_CLIENT_CA_FILE"),
        (
            {"DPOP_TLS_CERT_FILE": "/nonexistent/c.pem", "DPOP_TLS_KEY_FILE": "/nonexistent/k.pem"},
            "DPOP_TLS_CERT_FILE",
        ),
        ({"DPOP_SHUTDOWN_GRACE_SECONDS": "-1"}, "DPOP_SHUTDOWN_GRACE_SECONDS"),
        ({"DPOP_SHUTDOWN_GRACE_SECONDS": "nan"}, "DPOP_SHUTDOWN_GRACE_SECONDS"),
        ({"DPOP_MAX_MESSAGE_BYTES": "1024"}, "DPOP_MAX_MESSAGE_BYTES"),
        ({"DPOP_ALLOW_EXPLAIN": "2"}, "DPOP_ALLOW_EXPLAIN"),
        ({"DPOP_LOG_LEVEL": "LOUD"}, "DPOP_LOG_LEVEL"),
        ({"DPOP_CONFIG_FILE": "/nonexistent/dpop.toml"}, "DPOP_CONFIG_FILE"),
        ({"DPOP_REDIS_PASSWORD_FILE": "/nonexistent/pw"}, "DPOP_REDIS_PASSWORD_FILE"),
        ({"DPOP_NONCE_SECRET_FILE": "/nonexistent/s"}, "DPOP_NONCE_SECRET_FILE"),
        ({"DPOP_HTTP_LISTEN": "8081"}, "DPOP_HTTP_LISTEN"),
        ({"DPOP_HTTP_LISTEN": "unix:/tmp/fa.sock"}, "DPOP_HTTP_LISTEN"),
        ({"DPOP_HTTP_LISTEN": "127.0.0.1:50051"}, "DPOP_HTTP_LISTEN"),  # the gRPC port
        ({"DPOP_HTTP_TRUSTED_PROXIES": "10.0.0.0/33"}, "DPOP_HTTP_TRUSTED_PROXIES"),
        ({"DPOP_HTTP_TRUSTED_PROXIES": "10.0.0.1/8"}, "DPOP_HTTP_TRUSTED_PROXIES"),  # host bits
        ({"DPOP_HTTP_TRUSTED_PROXIES": "proxy.local"}, "DPOP_HTTP_TRUSTED_PROXIES"),
        ({"DPOP_HTTP_THREADS": "0"}, "DPOP_HTTP_THREADS"),
        ({"DPOP_HTTP_IDLE_TIMEOUT_SECONDS": "0"}, "DPOP_HTTP_IDLE_TIMEOUT_SECONDS"),
        ({"DPOP_HTTP_MAX_HEADER_BYTES": "16384"}, "DPOP_HTTP_MAX_HEADER_BYTES"),
        ({"DPOP_HTTP_MAX_HEADER_FIELDS": "2"}, "DPOP_HTTP_MAX_HEADER_FIELDS"),
        ({"DPOP_HTTP_LISTEN": "127.0.0.1:8081", "DPOP_WORKERS": "2"}, "DPOP_WORKERS"),
    ],
)
def test_each_validation_error_names_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ=env)
    assert raised.value.setting == setting
    assert str(raised.value).startswith(setting + ":")


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ('lisen = "127.0.0.1:1"\n', "lisen in"),
        ("replay_timeout_ms = true\n", "DPOP_REPLAY_TIMEOUT_MS"),
        ("proof_algs = 5\n", "DPOP_PROOF_ALGS"),
        ("issuers = 5\n", "issuers"),
        ("routes = [1]\n", "routes"),
        ("[[issuers]]\njwks_uri = 'https://as.example/jwks'\n", "issuers[0].issuer"),
        ("[[issuers]]\nissuer = 'https://as'\n", "issuers[0].jwks_uri"),
        ("[[issuers]]\nissuer = 'https://as'\njwks_uri = 'http://as/j'\n", "issuers[0].jwks_uri"),
        ("[[issuers]]\nissuer = 'https://as'\njwks_file = 'none.json'\n", "issuers[0].jwks_file"),
        (
            "[[issuers]]\nissuer = 'https://as'\njwks_uri = 'https://as/j'\nalgs = ['HS256']\n",
            "issuers[0].algs",
        ),
        (
            "[[issuers]]\nissuer = 'https://as'\njwks_uri = 'https://as/j'\naudience = ''\n",
            "issuers[0].audience",
        ),
        ("[[issuers]]\nissuer = 'https://as'\njwks_uri = 'https://j'\nkid = 1\n", "issuers[0].kid"),
        (
            "[[issuers]]\nissuer = 'https://as'\njwks_uri = 'https://as/j'\n"
            "[[issuers]]\nissuer = 'https://as'\njwks_uri = 'https://as/k'\n",
            "issuers[1].issuer",
        ),
        ("not toml at all = = \n", "DPOP_CONFIG_FILE"),
    ],
)
def test_config_file_errors_name_the_key(tmp_path: Path, text: str, setting: str) -> None:
    config = write(tmp_path / "dpop.toml", text)
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    assert str(raised.value).startswith(setting)


def test_unknown_file_key_suggests_the_right_one(tmp_path: Path) -> None:
    config = write(tmp_path / "dpop.toml", "replay_timeout = 5\n")
    with pytest.raises(ConfigError, match="did you mean 'replay_timeout_ms'"):
        load_settings(environ={"DPOP_CONFIG_FILE": str(config)})


def test_error_from_the_file_says_where_it_came_from(tmp_path: Path) -> None:
    config = write(tmp_path / "dpop.toml", "max_jti_chars = 0\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    assert raised.value.setting == "DPOP_MAX_JTI_CHARS"
    assert str(config) in str(raised.value)


def test_unknown_cli_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="--no-such-thing"):
        load_settings({"no_such_thing": "1"}, environ={})


def test_unsupported_config_file_extension(tmp_path: Path) -> None:
    config = write(tmp_path / "dpop.yaml", "listen: x\n")
    with pytest.raises(ConfigError, match=r"^DPOP_CONFIG_FILE: .*\.toml or \.json"):
        load_settings(environ={"DPOP_CONFIG_FILE": str(config)})


def test_password_file_is_read_and_trailing_newline_dropped(tmp_path: Path) -> None:
    password = write(tmp_path / "pw", "hunter2 \n")
    s = load_settings(
        environ={
            "DPOP_REPLAY_URL": "redis://redis:6379/0",
            "DPOP_REDIS_PASSWORD_FILE": str(password),
        }
    )
    assert s.replay.redis_password == "hunter2 "


def test_secret_files_are_read(tmp_path: Path) -> None:
    current = write(tmp_path / "current", SECRET + "\n")
    previous = write(tmp_path / "previous", "p" * 32)
    s = load_settings(
        environ={
            "DPOP_NONCE_SECRET_FILE": str(current),
            "DPOP_NONCE_PREVIOUS_SECRET_FILE": str(previous),
        }
    )
    assert s.proof.nonce_secret == SECRET.encode()
    assert s.proof.nonce_previous_secret == b"p" * 32


def test_secret_file_paths_in_config_file_are_relative_to_it(tmp_path: Path) -> None:
    write(tmp_path / "nonce.key", SECRET)
    config = write(tmp_path / "dpop.toml", 'nonce_secret_file = "nonce.key"\n')
    s = load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    assert s.proof.nonce_secret == SECRET.encode()


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    empty = write(tmp_path / "pw", "\n")
    with pytest.raises(ConfigError, match=r"^DPOP_REDIS_PASSWORD_FILE: .* is empty"):
        load_settings(environ={"DPOP_REDIS_PASSWORD_FILE": str(empty)})


@pytest.mark.parametrize(
    ("value_env", "file_env"),
    [
        ("DPOP_REDIS_PASSWORD", "DPOP_REDIS_PASSWORD_FILE"),
        ("DPOP_NONCE_SECRET", "DPOP_NONCE_SECRET_FILE"),
        ("DPOP_NONCE_PREVIOUS_SECRET", "DPOP_NONCE_PREVIOUS_SECRET_FILE"),
    ],
)
def test_secret_and_its_file_together_is_an_error(
    tmp_path: Path, value_env: str, file_env: str
) -> None:
    secret_file = write(tmp_path / "secret", SECRET)
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={value_env: SECRET, file_env: str(secret_file)})
    assert value_env in str(raised.value)
    assert file_env in str(raised.value)


def test_secrets_are_hidden_in_repr_and_str() -> None:
    s = load_settings(
        environ={
            "DPOP_REPLAY_URL": "rediss://user:url-password@redis:6380/0",
            "DPOP_REDIS_PASSWORD": "env-password",
            "DPOP_NONCE_SECRET": "n" * 32 + "-nonce-secret",
            "DPOP_NONCE_PREVIOUS_SECRET": "p" * 32 + "-previous-secret",
        }
    )
    for text in (repr(s), str(s), f"{s}", repr([s])):
        assert "url-password" not in text
        assert "env-password" not in text
        assert "nonce-secret" not in text
        assert "previous-secret" not in text
        assert "redis_password=<set>" in text
        assert "rediss://user:***@redis:6380/0" in text
    assert "nonce_secret=<unset>" in repr(Settings())


def test_errors_never_echo_a_secret() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_REPLAY_URL": "redis://u:topsecret@host:notaport"})
    assert "topsecret" not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_NONCE_SECRET": "tooshort-secret"})
    assert "tooshort-secret" not in str(raised.value)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.server.listen = "0.0.0.0:1"  # type: ignore[misc]


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^DPOP_PROOF_ALGS"):
        Settings.from_options(proof_algs=("none",))


def test_tls_files_must_exist_and_pair(tmp_path: Path) -> None:
    cert = write(tmp_path / "cert.pem", "x")
    key = write(tmp_path / "key.pem", "x")
    ca = write(tmp_path / "ca.pem", "x")
    s = load_settings(
        environ={
            "DPOP_TLS_CERT_FILE": str(cert),
            "DPOP_TLS_KEY_FILE": str(key),
            "DPOP_TLS_CLIENT_CA_FILE": str(ca),
        }
    )
    assert s.server.tls_enabled
    with pytest.raises(ConfigError, match=r"^DPOP_TLS_CERT_FILE"):
        load_settings(environ={"DPOP_TLS_KEY_FILE": str(key)})


def test_addresses_accept_ipv6_unix_and_port_zero() -> None:
    s = load_settings(
        environ={
            "DPOP_LISTEN": "[::]:0",
            "DPOP_HEALTH_LISTEN": "unix:/tmp/dpop-health.sock",
            "DPOP_METRICS_LISTEN": "localhost:9090",
        }
    )
    assert s.server.listen == "[::]:0"


def test_every_option_is_in_the_readme_settings_table() -> None:
    """The README's settings table lists every option (a new setting must be documented)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [o.env for o in OPTIONS if f"| `{o.env}` |" not in readme]
    assert not missing, f"README settings table lacks {missing}"


def test_forward_auth_settings() -> None:
    settings = load_settings(
        environ={
            "DPOP_HTTP_LISTEN": "0.0.0.0:8081",
            "DPOP_HTTP_TRUSTED_PROXIES": " 10.0.0.0/8 , fd00::/8,10.0.0.0/8, 192.0.2.7",
        }
    )
    assert settings.server.http_listen == "0.0.0.0:8081"
    assert settings.doors.http_trusted_proxies == ("10.0.0.0/8", "fd00::/8", "192.0.2.7/32")
    assert load_settings(environ={}).doors.http_trusted_proxies == ("127.0.0.0/8", "::1/128")
    assert load_settings(environ={}).server.http_listen == ""  # off by default
