"""Configuration hygiene: a misspelt ``DPOP_*`` variable stops start-up (Kubernetes service links
excepted), and every error names where the bad value came from (flag, variable or file)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from verifier.config import (
    OPTIONS,
    OTHER_VARIABLES,
    ConfigError,
    is_kubernetes_service_link,
    load_settings,
    source_of,
)


def kubelet_service_links(
    service: str, cluster_ip: str, ports: list[tuple[str, int, str]]
) -> dict[str, str]:
    """The variables the kubelet injects for one Service (``ports``: name, port, protocol),
    written from Kubernetes' pkg/kubelet/envvars/envvars.go (FromServices, makeLinkVariables)."""
    prefix = service.upper().replace("-", "_")
    env = {
        f"{prefix}_SERVICE_HOST": cluster_ip,
        f"{prefix}_SERVICE_PORT": str(ports[0][1]),
    }
    host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip
    for i, (name, port, protocol) in enumerate(ports):
        if name:
            env[f"{prefix}_SERVICE_PORT_{name.upper().replace('-', '_')}"] = str(port)
        url = f"{protocol.lower()}://{host}:{port}"
        if i == 0:
            env[f"{prefix}_PORT"] = url
        link = f"{prefix}_PORT_{port}_{protocol}"
        env[link] = url
        env[f"{link}_PROTO"] = protocol.lower()
        env[f"{link}_PORT"] = str(port)
        env[f"{link}_ADDR"] = cluster_ip
    return env


SERVICES = [
    ("dpop-verifier", "10.96.14.2", [("grpc", 50051, "TCP"), ("grpc-health", 50052, "TCP"),
                                     ("metrics", 9464, "TCP")]),
    ("dpop", "10.96.0.9", [("", 50051, "TCP")]),
    ("dpop-redis-master", "fd00:10:96::3e1", [("tcp-redis", 6379, "TCP")]),
    ("dpop-dns", "10.96.0.10", [("dns", 53, "UDP"), ("dns-sctp", 5353, "SCTP")]),
]  # fmt: skip


@pytest.mark.parametrize(("service", "ip", "ports"), SERVICES, ids=[s[0] for s in SERVICES])
def test_service_links_of_a_dpop_service_do_not_stop_start_up(
    service: str, ip: str, ports: list[tuple[str, int, str]]
) -> None:
    links = kubelet_service_links(service, ip, ports)
    assert all(is_kubernetes_service_link(k, v) for k, v in links.items()), links
    settings = load_settings(environ={**links, "DPOP_LISTEN": "127.0.0.1:6001"})
    assert settings.server.listen == "127.0.0.1:6001"


def test_a_misspelt_variable_stops_start_up_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_REPLAY_ULR": "redis://redis:6379/0"})
    assert raised.value.setting == "DPOP_REPLAY_ULR"
    assert "did you mean DPOP_REPLAY_URL?" in str(raised.value)


def test_every_unknown_variable_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_LISTN": "127.0.0.1:1", "DPOP_WORKER": "2", "DPOP_ZZZ": "1"})
    assert raised.value.setting == "DPOP_LISTN"
    assert "did you mean DPOP_LISTEN?" in raised.value.problem
    assert "also unknown: DPOP_WORKER, DPOP_ZZZ" in raised.value.problem


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DPOP_METRICS_PORT", "9464"),  # _PORT holds proto://ip:port in a service link
        ("DPOP_VERIFIER_PORT_50051_TCP", "tcp://10.0.0.1:50052"),  # port differs from the name
        ("DPOP_VERIFIER_PORT_50051_TCP_PROTO", "udp"),
        ("DPOP_SERVICE_HOST", "verifier.local"),  # a cluster IP, never a name
        ("DPOP_SERVICE_PORT", "70000"),
        ("DPOP_REDIS_PORT_6379_TCP_ADDR", "redis"),
        ("DPOP_HEALTH_PORT", "tcp://10.0.0.1"),
    ],
)
def test_look_alikes_of_service_links_are_still_refused(name: str, value: str) -> None:
    assert not is_kubernetes_service_link(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={name: value})
    assert raised.value.setting == name


def test_no_setting_has_a_name_kubernetes_could_inject() -> None:
    """A setting named like a service link (``DPOP_HTTP_PORT``) would be set by the kubelet
    for a Service called ``dpop-http``."""
    samples = ("10.0.0.1", "8080", "tcp://10.0.0.1:8080", "tcp")
    for option in OPTIONS:
        for value in samples:
            assert not is_kubernetes_service_link(option.env, value), option.env
        assert not re.search(r"_(SERVICE_HOST|SERVICE_PORT|PORT|PROTO|ADDR)$", option.env)


def test_empty_unknown_variables_and_the_repositorys_own_are_ignored() -> None:
    environ = {"DPOP_UNUSED": "", **dict.fromkeys(OTHER_VARIABLES, "0:1")}
    assert load_settings(environ=environ).server.listen == "127.0.0.1:50051"


def test_a_variable_the_config_file_names_is_known(tmp_path: Path) -> None:
    secret = tmp_path / "key.json"
    secret.write_text("{}", encoding="utf-8")
    config = tmp_path / "config.json"
    issuer = {
        "issuer": "https://as.example",
        "jwks_uri": "https://as.example/jwks",
        "introspection_client_id": "gateway",
        "introspection_endpoint": "https://as.example/introspect",
        "introspection_secret_env": "DPOP_INTROSPECTION_SECRET",
    }
    config.write_text(json.dumps({"issuers": [issuer]}), encoding="utf-8")
    environ = {"DPOP_CONFIG_FILE": str(config), "DPOP_INTROSPECTION_SECRET": "s3cret"}
    (loaded,) = load_settings(environ=environ).issuers
    assert loaded.introspection_secret == "s3cret"


def test_errors_from_flags_name_the_flag() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"config_file": "/nonexistent/dpop.toml"}, environ={})
    assert (
        str(raised.value)
        == "--config: cannot read /nonexistent/dpop.toml: No such file or directory"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings({"listen": "nowhere"}, environ={"DPOP_LISTEN": "127.0.0.1:1"})
    assert raised.value.setting == "--listen"
    with pytest.raises(ConfigError) as raised:
        load_settings({"workers": "two"}, environ={})
    assert raised.value.setting == "--workers"


def test_errors_from_the_environment_and_the_file_name_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_CONFIG_FILE": "/nonexistent/dpop.toml"})
    assert raised.value.setting == "DPOP_CONFIG_FILE"
    config = tmp_path / "dpop.toml"
    config.write_text('listen = "nowhere"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    assert str(raised.value).endswith(f"(from config file {config})")


def test_a_misspelt_issuer_key_gets_did_you_mean(tmp_path: Path) -> None:
    config = tmp_path / "dpop.toml"
    config.write_text(
        '[[issuers]]\nissuer = "https://as"\njwks_url = "https://as/jwks"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"DPOP_CONFIG_FILE": str(config)})
    assert raised.value.setting == "issuers[0].jwks_url"
    assert raised.value.problem == "unknown key (did you mean 'jwks_uri'?)"


def test_source_of_names_flag_variable_file_or_default(tmp_path: Path) -> None:
    config = tmp_path / "dpop.toml"
    config.write_text('listen = "127.0.0.1:7000"\n', encoding="utf-8")
    assert source_of("listen", {"listen": "127.0.0.1:1"}, environ={}) == "--listen"
    assert source_of("listen", {}, environ={"DPOP_LISTEN": "127.0.0.1:1"}) == "DPOP_LISTEN"
    assert source_of("listen", {}, environ={}, config_file=str(config)) == f"listen in {config}"
    assert source_of("listen", {}, environ={}) == "the default (DPOP_LISTEN)"
