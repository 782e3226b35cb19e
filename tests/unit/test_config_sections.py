"""Each settings section checks itself on construction; Settings checks what spans sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.config import (
    OPTIONS,
    ConfigError,
    DoorSettings,
    LogSettings,
    ProofSettings,
    ReplaySettings,
    ServerSettings,
    Settings,
)
from verifier.config.load import _SECRET_SOURCES


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: ServerSettings(listen=""), "DPOP_LISTEN"),
        (lambda: ServerSettings(tls_cert_file="cert.pem"), "DPOP_TLS_KEY_FILE"),
        (lambda: ServerSettings(workers=2, http_listen="127.0.0.1:0"), "DPOP_WORKERS"),
        (lambda: ReplaySettings(replay_url="memcached://x"), "DPOP_REPLAY_URL"),
        (lambda: ReplaySettings(redis_username="u"), "DPOP_REDIS_USERNAME"),
        (lambda: ReplaySettings(replay_url="redis://r", redis_retries=4), "DPOP_REDIS_RETRIES"),
        (lambda: ProofSettings(proof_algs=("HS256",)), "DPOP_PROOF_ALGS"),
        (lambda: ProofSettings(nonce_required=True), "DPOP_NONCE_SECRET"),
        (lambda: DoorSettings(upstream_header_jkt="host"), "DPOP_UPSTREAM_HEADER_JKT"),
        (lambda: DoorSettings(http_max_header_fields=7), "DPOP_HTTP_MAX_HEADER_FIELDS"),
        (lambda: LogSettings(log_level="LOUD"), "DPOP_LOG_LEVEL"),
        (lambda: LogSettings(decision_log_sample=2.0), "DPOP_DECISION_LOG_SAMPLE"),
    ],
)
def test_a_section_refuses_its_own_bad_values(build: object, setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        build()  # type: ignore[operator]
    assert raised.value.setting == setting


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"max_proof_bytes": 70000}, "DPOP_HTTP_MAX_HEADER_BYTES"),
        ({"max_token_bytes": 300000, "http_max_header_bytes": 400000}, "DPOP_MAX_MESSAGE_BYTES"),
        ({"routes": ({"path_prefix": "/", "nonce_required": True},)}, "routes[0].nonce_required"),
    ],
)
def test_settings_check_what_spans_sections(options: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_options(**options)
    assert raised.value.setting == setting


def test_from_options_puts_each_value_in_its_section() -> None:
    s = Settings.from_options(listen="[::]:0", replay_url="redis://r", allow_explain=True)
    assert s.server.listen == "[::]:0"
    assert s.replay.replay_url == "redis://r"
    assert s.doors.allow_explain is True
    assert s == Settings(
        server=ServerSettings(listen="[::]:0"),
        replay=ReplaySettings(replay_url="redis://r"),
        doors=DoorSettings(allow_explain=True),
    )
    with pytest.raises(TypeError, match="not a setting: lisen"):
        Settings.from_options(lisen="[::]:0")


def test_every_option_but_the_secret_files_has_one_home() -> None:
    settings = Settings()
    for option in OPTIONS:
        if option.name in _SECRET_SOURCES.values():
            continue
        homes = [
            name for name, section in Settings.SECTIONS.items()
            if option.name in section.__dataclass_fields__
        ]  # fmt: skip
        assert len(homes) == (0 if option.name == "config_file" else 1), option.name
        assert settings.value(option.name) is not None


def test_a_section_never_shows_its_secrets() -> None:
    replay = ReplaySettings(replay_url="redis://u:pw1@r", redis_password="pw2")
    proof = ProofSettings(nonce_secret=b"n" * 32)
    shown = repr(Settings(replay=replay, proof=proof))
    assert "pw1" not in shown and "pw2" not in shown and "nnnn" not in shown
    assert "redis_password=<set>" in shown and "nonce_secret=<set>" in shown


def test_the_client_certificate_ca_file_must_hold_pem_certificates(tmp_path: Path) -> None:
    from verifier.config.doors import DoorSettings

    with pytest.raises(ConfigError, match="DPOP_CLIENT_CERT_CA_FILE: no such file"):
        DoorSettings(client_cert_ca_file=str(tmp_path / "absent.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="DPOP_CLIENT_CERT_CA_FILE: no usable PEM CA"):
        DoorSettings(client_cert_ca_file=str(garbage))
