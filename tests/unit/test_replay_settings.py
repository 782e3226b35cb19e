"""The replay-store settings: Redis modes, TLS files, WAIT, retries, fail-open."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.config import ConfigError, load_settings
from verifier.replay import describe_replay_url


def test_defaults_fail_closed_without_wait() -> None:
    s = load_settings(environ={})
    assert s.replay.replay_fail_open is False
    assert s.replay.redis_wait_replicas == 0
    assert s.replay.redis_retries == 1
    assert s.replay.redis_key_prefix == "dpop:jti:"


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379/0",
        "rediss://cache:6380",
        "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "rediss+cluster://n1:7000,n2:7000,n3:7000",
    ],
)
def test_every_redis_form_is_accepted(url: str) -> None:
    assert load_settings(environ={"DPOP_REPLAY_URL": url}).replay.replay_url == url


@pytest.mark.parametrize(
    "url", ["redis+sentinel://s1,s2", "redis+cluster://n1/2", "redis://h?ssl=1", "mongo://x"]
)
def test_bad_urls_name_the_setting(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_REPLAY_URL": url})
    assert raised.value.setting == "DPOP_REPLAY_URL"


def test_password_never_appears_in_errors_or_descriptions() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_REPLAY_URL": "redis+cluster://u:hunter2@n1/3"})
    assert "hunter2" not in str(raised.value)
    described = describe_replay_url("redis+sentinel://u:hunter2@s1,s2/main/1")
    assert "hunter2" not in described
    expected = "redis sentinel (sentinels s1:26379,s2:26379, master 'main', db 1, plaintext)"
    assert described == expected


def test_fail_open_wait_retries_and_prefix_are_parsed() -> None:
    s = load_settings(
        environ={
            "DPOP_REPLAY_URL": "redis://cache",
            "DPOP_REPLAY_FAIL_OPEN": "true",
            "DPOP_REDIS_WAIT_REPLICAS": "2",
            "DPOP_REDIS_WAIT_TIMEOUT_MS": "20",
            "DPOP_REDIS_RETRIES": "0",
            "DPOP_REDIS_KEY_PREFIX": "tenant-a:",
        }
    )
    assert s.replay.replay_fail_open and s.replay.redis_wait_replicas == 2
    assert (s.replay.redis_wait_timeout_ms, s.replay.redis_retries, s.replay.redis_key_prefix) == (
        20,
        0,
        "tenant-a:",
    )


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"DPOP_REDIS_WAIT_REPLICAS": "1"}, "DPOP_REDIS_WAIT_REPLICAS"),
        ({"DPOP_REDIS_PASSWORD": "x"}, "DPOP_REDIS_PASSWORD"),
        ({"DPOP_REPLAY_URL": "redis://c", "DPOP_REDIS_RETRIES": "4"}, "DPOP_REDIS_RETRIES"),
        ({"DPOP_REPLAY_URL": "redis://c", "DPOP_REDIS_WAIT_TIMEOUT_MS": "0"},
         "DPOP_REDIS_WAIT_TIMEOUT_MS"),
        ({"DPOP_REPLAY_URL": "redis://c", "DPOP_REDIS_KEY_PREFIX": "a b"},
         "DPOP_REDIS_KEY_PREFIX"),
        ({"DPOP_REPLAY_URL": "redis://c", "DPOP_REDIS_SENTINEL_PASSWORD": "x"},
         "DPOP_REDIS_SENTINEL_PASSWORD"),
        ({"DPOP_REPLAY_URL": "redis://c", "DPOP_REPLAY_FAIL_OPEN": "maybe"},
         "DPOP_REPLAY_FAIL_OPEN"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused(environ: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ=environ)
    assert raised.value.setting == setting


def test_tls_files_need_a_tls_url_exist_and_pair(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_REPLAY_URL": "redis://c", "DPOP_REDIS_CA_FILE": str(ca)})
    assert raised.value.setting == "DPOP_REDIS_CA_FILE"
    tls = {"DPOP_REPLAY_URL": "rediss+sentinel://s1/m", "DPOP_REDIS_CA_FILE": str(ca)}
    assert load_settings(environ=tls).replay.redis_ca_file == str(ca)
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={**tls, "DPOP_REDIS_CERT_FILE": str(ca)})
    assert raised.value.setting == "DPOP_REDIS_KEY_FILE"
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={**tls, "DPOP_REDIS_KEY_FILE": str(tmp_path / "missing.pem")})
    assert raised.value.setting == "DPOP_REDIS_KEY_FILE"


def test_sentinel_password_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "sentinel-password"
    secret.write_text("s3ntinel\n")
    s = load_settings(
        environ={
            "DPOP_REPLAY_URL": "redis+sentinel://s1/m",
            "DPOP_REDIS_SENTINEL_PASSWORD_FILE": str(secret),
        }
    )
    assert s.replay.redis_sentinel_password == "s3ntinel"
    assert "s3ntinel" not in repr(s)


def test_tls_paths_in_a_config_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    config = tmp_path / "dpop.toml"
    config.write_text('replay_url = "rediss://cache"\nredis_ca_file = "ca.pem"\n')
    s = load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    assert s.replay.redis_ca_file == str(tmp_path / "ca.pem")
