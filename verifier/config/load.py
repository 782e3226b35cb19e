"""Loading the settings: the layers (command line > environment > config file > defaults),
the documented options (:data:`OPTIONS`, the README table), where a value came from, and the
refusal of unknown ``DPOP_*`` variables."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier.config.issuers import parse_issuers
from verifier.config.proof import ProofSettings
from verifier.config.replay import ReplaySettings
from verifier.config.settings import Settings
from verifier.config.values import ConfigError


@dataclass(frozen=True, slots=True)
class Option:
    """One documented setting: its name (``Settings`` field and config-file key), environment
    variable, default as shown to operators, and help text. ``secret`` values are never shown.
    """

    name: str
    env: str
    default: str
    help: str
    secret: bool = False

    @property
    def flag(self) -> str:
        """The conventional command-line flag, e.g. ``--replay-url``."""
        return "--" + self.name.replace("_", "-")


def _opt(name: str, help: str, *, secret: bool = False) -> Option:
    value = _SETTINGS_DEFAULTS.get(name, "")
    if isinstance(value, tuple):
        shown = ",".join(value)
    elif isinstance(value, bool):
        shown = str(value).lower()
    else:
        shown = "" if secret else str(value)
    return Option(name, "DPOP_" + name.upper(), shown, help, secret)


_SETTINGS_DEFAULTS = {
    f.name: f.default
    for section in Settings.SECTIONS.values()
    for f in dataclasses.fields(section)
    if f.default is not dataclasses.MISSING
}

OPTIONS: tuple[Option, ...] = (
    _opt("listen", "Main gRPC address (host:port, [v6]:port or unix:path); port 0 picks one."),
    _opt(
        "health_listen",
        "Extra plaintext port serving only grpc.health.v1, with its own threads and call limit "
        "(for TLS setups, and for liveness probes that an overload must not fail).",
    ),
    _opt("metrics_listen", "host:port of the Prometheus /metrics HTTP endpoint (off when empty)."),
    _opt(
        "http_listen",
        "host:port of the forward-auth HTTP listener for NGINX auth_request, Traefik "
        "ForwardAuth, Caddy forward_auth, HAProxy (off when empty; docs/gateways.md).",
    ),
    _opt(
        "http_trusted_proxies",
        "Forward-auth: addresses (comma list of CIDRs) whose X-Forwarded-*/X-Original-* headers "
        "are believed; any other caller gets 403 untrusted_proxy.",
    ),
    _opt("http_threads", "Forward-auth: threads answering complete requests."),
    _opt(
        "http_idle_timeout_seconds",
        "Forward-auth: an idle keep-alive connection is closed after this long (keep it above "
        "the gateway's own upstream idle timeout).",
    ),
    _opt(
        "http_max_header_bytes",
        "Forward-auth: largest request head (request line and headers); beyond: 431.",
    ),
    _opt("http_max_header_fields", "Forward-auth: most header fields in a request; beyond: 431."),
    _opt("config_file", "TOML (.toml) or JSON (.json) config file; also --config."),
    _opt(
        "replay_url",
        "Replay store: memory:// (one replica), redis[s]://host:port/db, "
        "redis[s]+sentinel://h1:26379,h2/master/db or redis[s]+cluster://h1,h2,h3.",
    ),
    _opt("redis_username", "Redis ACL username (overrides one in the URL)."),
    _opt("redis_password", "Redis password.", secret=True),
    _opt("redis_password_file", "File holding the Redis password."),
    _opt("replay_timeout_ms", "Replay store deadline per request; on timeout: deny."),
    _opt("replay_fail_open", "Accept proofs unchecked while the replay store is down (unsafe)."),
    _opt("redis_sentinel_username", "ACL username for the sentinels (redis+sentinel://)."),
    _opt("redis_sentinel_password", "Password for the sentinels.", secret=True),
    _opt("redis_sentinel_password_file", "File holding the sentinels' password."),
    _opt("redis_ca_file", "PEM CA bundle to verify Redis TLS (rediss*); default: system CAs."),
    _opt("redis_cert_file", "PEM client certificate for Redis TLS."),
    _opt("redis_key_file", "PEM private key of the Redis client certificate."),
    _opt("redis_wait_replicas", "WAIT for this many replicas per recorded proof (0: off)."),
    _opt("redis_wait_timeout_ms", "Longest WAIT; fewer acknowledgements: deny."),
    _opt("redis_retries", "Safe retries on a broken Redis connection (0-3), within the deadline."),
    _opt("redis_key_prefix", "Prefix of every replay key in Redis."),
    _opt("memory_replay_max_entries", "Bound of the in-memory replay store."),
    _opt("proof_algs", "Allowed DPoP proof algorithms (comma list); none and HS* are refused."),
    _opt("iat_max_age_seconds", "How old a proof's iat may be."),
    _opt("iat_max_skew_seconds", "How far in the future a proof's iat may be."),
    _opt("token_leeway_seconds", "Clock leeway for access-token exp/nbf."),
    _opt("max_proof_bytes", "Largest DPoP header accepted."),
    _opt("max_token_bytes", "Largest access token accepted."),
    _opt("max_jti_chars", "Longest proof jti accepted."),
    _opt("nonce_required", "Require a server nonce in every proof (RFC 9449 §9)."),
    _opt("nonce_secret", "HMAC key for nonces (>= 32 bytes), shared by replicas.", secret=True),
    _opt("nonce_secret_file", "File holding the nonce secret."),
    _opt("nonce_previous_secret", "Previous nonce key, still accepted (rotation).", secret=True),
    _opt("nonce_previous_secret_file", "File holding the previous nonce secret."),
    _opt("nonce_lifetime_seconds", "How long an issued nonce is accepted."),
    _opt("tls_cert_file", "PEM certificate chain: serve TLS on the main port."),
    _opt("tls_key_file", "PEM private key for the certificate."),
    _opt("tls_client_ca_file", "PEM CA bundle: require and verify client certificates (mTLS)."),
    _opt("shutdown_grace_seconds", "On SIGTERM/SIGINT, how long in-flight calls may finish."),
    _opt(
        "max_message_bytes",
        "Hard cap on one gRPC request message (beyond: RESOURCE_EXHAUSTED, which Envoy turns "
        "into a bare 403). Below it, an oversized DPoP header or token is a precise denial.",
    ),
    _opt(
        "server_threads",
        "Threads answering gRPC calls in each process (calls waiting on Redis or an issuer "
        "hold one).",
    ),
    _opt(
        "max_concurrent_calls",
        "Calls accepted at once per process (counted once their request message is in); "
        "beyond it a call fails fast with RESOURCE_EXHAUSTED.",
    ),
    _opt(
        "max_pending_calls",
        "Calls still waiting for their request message, per process (they hold no thread); "
        "beyond it a new call fails fast with RESOURCE_EXHAUSTED.",
    ),
    _opt(
        "receive_timeout_ms",
        "How long a call may take to deliver its request message; then DEADLINE_EXCEEDED.",
    ),
    _opt(
        "max_streams_per_connection",
        "Concurrent calls per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS).",
    ),
    _opt("max_connections", "Open connections per listener; beyond it new ones are refused."),
    _opt(
        "keepalive_seconds",
        "Ping a connection after this long without traffic (HTTP/2 keepalive).",
    ),
    _opt(
        "keepalive_timeout_seconds",
        "A peer that does not answer a keepalive ping within this is closed (dead peers "
        "are reaped within keepalive + timeout).",
    ),
    _opt(
        "liveness_stall_seconds",
        "Liveness turns NOT_SERVING when admitted calls make no progress, or the event loop "
        "does not run, for this long.",
    ),
    _opt(
        "workers",
        "Server processes sharing the port (SO_REUSEPORT), supervised; 1 (one per container) "
        "is what Kubernetes expects.",
    ),
    _opt("allow_explain", "Honour VerifyRequest.explain (returns the list of checks)."),
    _opt("log_level", "One of CRITICAL, ERROR, WARNING, INFO, DEBUG."),
    _opt("log_format", "Service log lines: text or json (decision lines are always JSON)."),
    _opt("decision_log", "One JSON line per decision: all, deny (denials only) or none."),
    _opt("decision_log_sample", "Fraction (0-1) of allow/deny lines kept; faults always kept."),
    _opt("upstream_header_jkt", "ext_authz: header carrying the proof key's thumbprint upstream."),
    _opt("upstream_header_subject", "ext_authz: header carrying the token's sub upstream."),
    _opt("upstream_header_client_id", "ext_authz: header carrying the token's client_id upstream."),
    _opt("upstream_header_scope", "ext_authz: header carrying the token's scope upstream."),
    _opt("upstream_header_issuer", "ext_authz: header carrying the token's iss upstream."),
    _opt("upstream_header_report_only", "ext_authz: header naming a report-only route's denial."),
    _opt("trusted_forwarded_headers", "ext_authz: trusted x-forwarded-proto/-host, forwarded."),
    _opt(
        "extauthz_client_cert",
        "ext_authz: where the client certificate of mTLS-bound tokens comes from: peer "
        "(source.certificate; Envoy include_peer_certificate), xfcc or none (docs/fapi2.md).",
    ),
    _opt(
        "xfcc_trusted_by",
        "ext_authz: comma list of By= URIs of the proxies whose x-forwarded-client-cert "
        "element is believed (with DPOP_EXTAUTHZ_CLIENT_CERT=xfcc).",
    ),
    _opt(
        "http_client_cert_header",
        "Forward-auth: header carrying the client certificate, read from trusted proxies only "
        "(off when empty).",
    ),
    _opt(
        "http_client_cert_format",
        "Forward-auth: that header's format: escaped-pem (NGINX $ssl_client_escaped_cert), "
        "traefik, rfc9440 (Client-Cert) or pem.",
    ),
    _opt(
        "client_cert_ca_file",
        "PEM CA certificates a client certificate must chain to (RFC 5280, clientAuth); empty: "
        "any certificate, self-signed too, binds (RFC 8705 §2.2).",
    ),
)
"""Every option, in documentation order (CLI ``--help`` and the README table use it)."""

_BY_NAME = {o.name: o for o in OPTIONS}
_FILE_ONLY_KEYS = ("issuers", "routes", "public_base_urls")
_SECRET_SOURCES = {**ReplaySettings.SECRET_FILES, **ProofSettings.SECRET_FILES}
_PATH_KEYS = frozenset(
    {
        "tls_cert_file", "tls_key_file", "tls_client_ca_file",
        "redis_ca_file", "redis_cert_file", "redis_key_file", "client_cert_ca_file",
        *_SECRET_SOURCES.values(),
    }
)  # fmt: skip


def options_markdown() -> str:
    """The options as a Markdown table, for the README."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    rows += [f"| `{o.env}` | `{o.default}` | {o.help} |" for o in OPTIONS]
    return "\n".join(rows)


def load_settings(
    overrides: Mapping[str, object] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the settings once: ``overrides`` (CLI) > ``environ`` > config file > defaults.

    ``overrides`` is keyed by :attr:`Option.name` (``{"listen": "0.0.0.0:50051"}``); values may
    be strings as typed on a command line or already-typed values. ``environ`` defaults to
    ``os.environ``. Raises :class:`ConfigError`.
    """
    env = os.environ if environ is None else environ
    layers: list[tuple[str, dict[str, object]]] = []
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in cli:
        if key not in _BY_NAME:
            raise ConfigError(flag_of(key), "unknown setting")
    env_values = {o.name: env[o.env] for o in OPTIONS if env.get(o.env, "").strip() != ""}
    layers.append(("command line", cli))
    layers.append(("environment", dict(env_values)))

    config_file = str(cli.get("config_file") or env_values.get("config_file") or "")
    file_values: dict[str, Any] = {}
    if config_file:
        named_by = flag_of("config_file") if cli.get("config_file") else "DPOP_CONFIG_FILE"
        file_values = _read_config_file(config_file, named_by)
        settable = {k: v for k, v in file_values.items() if k not in _FILE_ONLY_KEYS}
        layers.append((f"config file {config_file}", settable))
    check_environment_names(env, also_known=_variables_named_in(file_values))

    raw: dict[str, object] = {}
    origin: dict[str, str] = {}
    for source, values in reversed(layers):
        for key, value in values.items():
            raw[key] = value
            origin[key] = source

    try:
        raw.pop("config_file", None)
        raw.update({k: file_values[k] for k in ("routes", "public_base_urls") if k in file_values})
        issuers = parse_issuers(file_values.get("issuers", []), Path(config_file).parent, env)
        return Settings.from_values(raw, issuers=issuers, config_file=config_file)
    except ConfigError as exc:
        name = exc.setting.removeprefix("DPOP_").lower()
        if origin.get(name) == "command line":
            raise ConfigError(flag_of(name), exc.problem) from None
        if name in origin and origin[name] != "environment":
            raise ConfigError(exc.setting, f"{exc.problem} (from {origin[name]})") from None
        raise


_FLAGS = {"config_file": "--config"}
"""Settings whose command-line flag is not the conventional :attr:`Option.flag`."""


def flag_of(name: str) -> str:
    """The command-line flag that sets the setting ``name`` (``listen`` -> ``--listen``)."""
    return _FLAGS.get(name) or "--" + name.replace("_", "-")


def source_of(
    name: str,
    overrides: Mapping[str, object] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str = "",
) -> str:
    """Where the value of the setting ``name`` came from, as a user would look for it: its
    flag, its environment variable, its key in the config file, or ``the default``."""
    env = os.environ if environ is None else environ
    option = _BY_NAME[name]
    if (overrides or {}).get(name) is not None:
        return flag_of(name)
    if env.get(option.env, "").strip():
        return option.env
    if config_file:
        with contextlib.suppress(ConfigError):
            if name in _read_config_file(config_file, "DPOP_CONFIG_FILE"):
                return f"{name} in {config_file}"
    return f"the default ({option.env})"


# --- unknown environment variables -----------------------------------------------------------

OTHER_VARIABLES = frozenset({"DPOP_VERIFIER_WORKER", "DPOP_FUZZ_SECONDS", "DPOP_FUZZ_SCRATCH"})
"""``DPOP_*`` variables that are not settings but are read by this repository's own tools: the
``--workers`` supervisor's mark on its workers, and the fuzzing harness's knobs."""

_K8S_SERVICE = r"DPOP(?:_[A-Z0-9_]*[A-Z0-9])?"
_K8S_PORT_LINK = rf"{_K8S_SERVICE}_PORT_(?P<port>[0-9]{{1,5}})_(?P<proto>TCP|UDP|SCTP)"
_K8S_LINK_FORMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), form)
    for pattern, form in (
        (rf"{_K8S_SERVICE}_SERVICE_HOST", "ip"),
        (rf"{_K8S_SERVICE}_SERVICE_PORT(?:_[A-Z0-9_]+)?", "port"),
        (rf"{_K8S_SERVICE}_PORT", "url"),
        (_K8S_PORT_LINK, "url"),
        (rf"{_K8S_PORT_LINK}_PROTO", "proto"),
        (rf"{_K8S_PORT_LINK}_PORT", "port"),
        (rf"{_K8S_PORT_LINK}_ADDR", "ip"),
    )
)
_K8S_LINK_URL = re.compile(
    r"(?P<proto>tcp|udp|sctp)://(?P<host>\[[0-9a-fA-F:.]+\]|[0-9.]+):(?P<port>[0-9]{1,5})"
)


def is_kubernetes_service_link(name: str, value: str) -> bool:
    """Whether ``name=value`` is a variable the kubelet injects for a Service whose name
    starts with ``dpop-`` (or is ``dpop``), as it does for every Service of the namespace
    unless the pod sets ``enableServiceLinks: false``.

    For a Service ``dpop-verifier`` with port 50051/TCP named ``grpc`` these are
    ``DPOP_VERIFIER_SERVICE_HOST`` (its cluster IP), ``DPOP_VERIFIER_SERVICE_PORT`` and
    ``DPOP_VERIFIER_SERVICE_PORT_GRPC`` (``50051``), and the Docker-link style
    ``DPOP_VERIFIER_PORT`` and ``DPOP_VERIFIER_PORT_50051_TCP`` (``tcp://<ip>:50051``) with
    ``_PROTO``, ``_PORT`` and ``_ADDR``. Both the name and the value must have that shape, so
    a misspelt setting (``DPOP_METRICS_PORT=9464``) is not mistaken for one.
    """
    return any(
        (match := pattern.fullmatch(name)) is not None and _link_value_fits(form, value, match)
        for pattern, form in _K8S_LINK_FORMS
    )


def _link_value_fits(form: str, value: str, name: re.Match[str]) -> bool:
    named = name.groupdict()
    port, proto = named.get("port"), (named.get("proto") or "").lower()
    if form == "ip":
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(value)
            return True
        return False
    if form == "port":
        return (
            value.isascii()
            and value.isdigit()
            and 0 < int(value) <= 65535
            and (port is None or value == port)
        )
    if form == "proto":
        return value == proto
    url = _K8S_LINK_URL.fullmatch(value)
    if (
        url is None
        or (port is not None and url["port"] != port)
        or (proto and url["proto"] != proto)
    ):
        return False
    return _link_value_fits("ip", url["host"].strip("[]"), name) and _link_value_fits(
        "port", url["port"], name
    )


def check_environment_names(
    environ: Mapping[str, str], *, also_known: frozenset[str] = frozenset()
) -> None:
    """Refuse a ``DPOP_*`` variable that is not a setting: a misspelt name would otherwise be
    ignored in silence (``DPOP_REPLAY_ULR`` leaves every replica with its own in-memory replay
    store). Allowed besides the settings: :data:`OTHER_VARIABLES`, the names in
    ``also_known`` (variables the config file names, e.g. ``introspection_secret_env``), empty
    variables, and Kubernetes service links (:func:`is_kubernetes_service_link`)."""
    known = {o.env for o in OPTIONS}
    unknown = sorted(
        name
        for name, value in environ.items()
        if name.startswith("DPOP_")
        and name not in known
        and name not in OTHER_VARIABLES
        and name not in also_known
        and value.strip()
        and not is_kubernetes_service_link(name, value)
    )
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    more = f"; also unknown: {', '.join(unknown[1:])}" if unknown[1:] else ""
    raise ConfigError(
        unknown[0],
        f"unknown environment variable{hint}{more}. Every setting: dpop-verifier serve --help",
    )


def _variables_named_in(file_values: Mapping[str, Any]) -> frozenset[str]:
    """Environment variables the config file names (each issuer's ``introspection_secret_env``)."""
    issuers = file_values.get("issuers")
    if not isinstance(issuers, list):
        return frozenset()
    return frozenset(
        entry["introspection_secret_env"]
        for entry in issuers
        if isinstance(entry, dict) and isinstance(entry.get("introspection_secret_env"), str)
    )


# --- reading -------------------------------------------------------------------------------


def _read_config_file(path: str, where: str) -> dict[str, Any]:
    """The file's settings; errors name ``where`` (``--config`` or ``DPOP_CONFIG_FILE``)."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc.strerror}") from None
    try:
        if file.suffix == ".toml":
            data: object = tomllib.loads(text.decode("utf-8"))
        elif file.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(where, f"{path}: use a .toml or .json file")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(where, f"{path} is not valid {file.suffix[1:].upper()}: {exc}") from None
    except RecursionError:
        raise ConfigError(where, f"{path}: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(where, f"{path}: the top level must be an object")

    known = [o.name for o in OPTIONS if o.name != "config_file"] + list(_FILE_ONLY_KEYS)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{key} in {path}", f"unknown setting{hint}")

    base = file.parent
    for key in _PATH_KEYS & data.keys():
        if isinstance(data[key], str) and data[key]:
            data[key] = str(base / data[key])
    return data
