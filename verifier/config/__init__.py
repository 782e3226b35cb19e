"""The service's settings: read once at start-up into one frozen, validated :class:`Settings`.

Sources, highest precedence first:

1. CLI overrides (``load_settings(overrides=...)``, keyed by setting name);
2. environment variables (``DPOP_*``; an empty value counts as unset);
3. an optional config file (``DPOP_CONFIG_FILE`` or ``--config``): TOML (``.toml``) or JSON
   (``.json``) whose keys are the setting names, plus ``issuers`` and ``routes``, which only the
   file can set. Relative paths in the file are relative to the file's directory;
4. the defaults listed in :data:`OPTIONS`.

Bad configuration fails fast with a :class:`ConfigError` whose message starts with the
environment variable, flag (``--listen``) or file key at fault. An unknown ``DPOP_*``
variable is bad configuration too (:func:`check_environment_names`; Kubernetes service links
excepted). Secrets never appear in ``repr`` or in errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import SplitResult, urlsplit

from verifier.domain.model import Policy
from verifier.domain.routes import RouteError, parse_routes
from verifier.domain.uri import redact_url
from verifier.doors.client_certificate import EXTAUTHZ_SOURCES
from verifier.mtls import HEADER_FORMATS
from verifier.replay.redis_url import REDIS_SCHEMES, parse_redis_url
from verifier.tokens.presets import PRESETS

DEFAULT_ALGS: tuple[str, ...] = (
    "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
    "RS256", "RS384", "RS512", "EdDSA", "Ed25519",
)  # fmt: skip
"""The asymmetric JWS algorithms this service can verify (proofs and access tokens)."""

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
LOG_FORMATS = ("text", "json")
DECISION_LOG_MODES = ("all", "deny", "none")
MIN_NONCE_SECRET_BYTES = 32
REPLAY_URL_SCHEMES = ("memory", *REDIS_SCHEMES)
INTROSPECTION_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


class ConfigError(Exception):
    """The configuration is invalid. ``setting`` names the variable or key at fault."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerSettings:
    """One trusted access-token issuer (config file ``issuers`` entry).

    Keys come from at most one of ``jwks_file``, ``jwks_uri`` and ``discovery`` (metadata at
    ``metadata_url`` or the well-known URLs); an issuer without keys must introspect
    (``introspection_client_id``). ``audience``: one audience or a tuple of them, any of which
    ``aud`` must name; None: ``aud`` is not checked. ``algs`` is never empty (it defaults to
    :data:`DEFAULT_ALGS`). ``preset`` names the :mod:`verifier.tokens.presets` entry the
    file's keys were laid over (already applied here). See docs/token-sources.md.
    """

    issuer: str
    preset: str = ""
    audience: str | tuple[str, ...] | None = None
    jwt_typ: tuple[str, ...] = ("at+jwt", "application/at+jwt")
    """Accepted ``typ`` headers of its JWT access tokens (RFC 9068 §4); "" accepts none."""
    require_iat: bool = True
    """Its JWT access tokens must carry ``iat`` (RFC 9068 §2.2)."""
    client_id_claims: tuple[str, ...] = ("client_id", "azp")
    """The claims naming the client, first present wins (``x-auth-client-id``)."""
    jwks_file: str = ""
    jwks_uri: str = ""
    algs: tuple[str, ...] = DEFAULT_ALGS
    discovery: bool = False
    metadata_url: str = ""
    ca_file: str = ""
    jwks_refresh_seconds: int = 300
    jwks_min_refresh_seconds: int = 60
    jwks_max_refresh_seconds: int = 3600
    jwks_max_stale_seconds: int = 21600
    unknown_kid_cooldown_seconds: int = 30
    introspection_endpoint: str = ""
    introspection_client_id: str = ""
    introspection_auth: str = "client_secret_basic"
    introspection_secret_file: str = ""
    introspection_secret_env: str = ""
    introspection_secret: str = field(default="", repr=False)
    """Read from ``introspection_secret_file`` or the variable ``introspection_secret_env``."""
    introspection_key_file: str = ""
    introspection_key_alg: str = ""
    introspection_assertion_audience: str = ""
    introspection_timeout_ms: int = 2000
    introspection_cache_seconds: int = 300
    introspection_negative_cache_seconds: int = 10
    opaque_tokens: bool = False
    introspect_jwts: bool = False

    @property
    def introspects(self) -> bool:
        """True when the issuer has an introspection client configured."""
        return bool(self.introspection_client_id)

    @property
    def discovers(self) -> bool:
        """True when the issuer's metadata is read (``discovery`` or ``metadata_url``)."""
        return self.discovery or bool(self.metadata_url)

    @property
    def audiences(self) -> tuple[str, ...] | None:
        """``audience`` as a tuple (None: not checked)."""
        if self.audience is None:
            return None
        return (self.audience,) if isinstance(self.audience, str) else self.audience


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Settings:
    """Every setting of the service, validated on construction (see :data:`OPTIONS`).

    Build it with :func:`load_settings`; construct it directly only in tests.
    """

    listen: str = "127.0.0.1:50051"
    health_listen: str = ""
    metrics_listen: str = ""
    http_listen: str = ""
    http_trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    http_threads: int = 16
    http_idle_timeout_seconds: int = 120
    http_max_header_bytes: int = 65536
    http_max_header_fields: int = 100
    config_file: str = ""
    replay_url: str = "memory://"
    redis_username: str = ""
    redis_password: str = field(default="", metadata={"secret": True})
    replay_timeout_ms: int = 50
    replay_fail_open: bool = False
    redis_sentinel_username: str = ""
    redis_sentinel_password: str = field(default="", metadata={"secret": True})
    redis_ca_file: str = ""
    redis_cert_file: str = ""
    redis_key_file: str = ""
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 50
    redis_retries: int = 1
    redis_key_prefix: str = "dpop:jti:"
    memory_replay_max_entries: int = 1_000_000
    proof_algs: tuple[str, ...] = DEFAULT_ALGS
    iat_max_age_seconds: int = 60
    iat_max_skew_seconds: int = 30
    token_leeway_seconds: int = 30
    max_proof_bytes: int = 8192
    max_token_bytes: int = 16384
    max_jti_chars: int = 256
    nonce_required: bool = False
    nonce_secret: bytes = field(default=b"", metadata={"secret": True})
    nonce_previous_secret: bytes = field(default=b"", metadata={"secret": True})
    nonce_lifetime_seconds: int = 300
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    shutdown_grace_seconds: float = 10.0
    max_message_bytes: int = 262144
    server_threads: int = 16
    max_concurrent_calls: int = 1024
    max_pending_calls: int = 4096
    receive_timeout_ms: int = 5000
    max_streams_per_connection: int = 1024
    max_connections: int = 4096
    keepalive_seconds: int = 20
    keepalive_timeout_seconds: int = 10
    liveness_stall_seconds: int = 30
    workers: int = 1
    allow_explain: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    decision_log: str = "all"
    decision_log_sample: float = 1.0
    issuers: tuple[IssuerSettings, ...] = ()
    routes: tuple[Mapping[str, Any], ...] = ()
    upstream_header_jkt: str = "x-dpop-jkt"
    upstream_header_subject: str = "x-auth-subject"
    upstream_header_client_id: str = "x-auth-client-id"
    upstream_header_scope: str = "x-auth-scope"
    upstream_header_issuer: str = "x-auth-issuer"
    upstream_header_report_only: str = "x-dpop-report-only"
    trusted_forwarded_headers: tuple[str, ...] = ()
    extauthz_client_cert: str = "peer"
    xfcc_trusted_by: tuple[str, ...] = ()
    http_client_cert_header: str = ""
    http_client_cert_format: str = "escaped-pem"
    public_base_urls: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def tls_enabled(self) -> bool:
        """True when the main port serves TLS."""
        return bool(self.tls_cert_file)

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                shown = "<set>" if value else "<unset>"
            elif f.name == "replay_url":
                shown = repr(redact_url(value))
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__


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


_SETTINGS_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}

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
)
"""Every option, in documentation order (CLI ``--help`` and the README table use it)."""

_BY_NAME = {o.name: o for o in OPTIONS}
_FILE_ONLY_KEYS = ("issuers", "routes", "public_base_urls")
_SECRET_SOURCES = {
    "redis_password": "redis_password_file",
    "redis_sentinel_password": "redis_sentinel_password_file",
    "nonce_secret": "nonce_secret_file",
    "nonce_previous_secret": "nonce_previous_secret_file",
}
_PATH_KEYS = frozenset(
    {
        "tls_cert_file", "tls_key_file", "tls_client_ca_file",
        "redis_ca_file", "redis_cert_file", "redis_key_file",
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
        kwargs = _parse(raw)
        kwargs["config_file"] = config_file
        kwargs["issuers"] = _parse_issuers(
            file_values.get("issuers", []), Path(config_file).parent, env
        )
        kwargs["routes"] = _parse_routes(file_values.get("routes", []))
        kwargs["public_base_urls"] = _parse_base_urls(file_values.get("public_base_urls", {}))
        return Settings(**kwargs)
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


def _parse(raw: Mapping[str, object]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "config_file" or name in _SECRET_SOURCES.values():
            continue
        parser = _PARSERS.get(name, _text)
        kwargs[name] = parser(_BY_NAME[name].env, value)
    for name, file_key in _SECRET_SOURCES.items():
        if name in raw and file_key in raw:
            env, file_env = _BY_NAME[name].env, _BY_NAME[file_key].env
            raise ConfigError(file_env, f"set either {env} or {file_env}, not both")
        if file_key in raw:
            secret = _read_secret_file(_BY_NAME[file_key].env, raw[file_key])
            text_secret = name in ("redis_password", "redis_sentinel_password")
            kwargs[name] = secret.decode("utf-8") if text_secret else secret
    return kwargs


def _read_secret_file(setting: str, value: object) -> bytes:
    path = _text(setting, value)
    try:
        secret = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
    except ValueError:  # a NUL in the path
        raise ConfigError(setting, "not a usable file name") from None
    if not secret:
        raise ConfigError(setting, f"{path} is empty")
    return secret


_ISSUER_PATHS = ("jwks_file", "ca_file", "introspection_secret_file", "introspection_key_file")


def _issuer_parser(key: str) -> Callable[[str, object], Any]:
    default = _ISSUER_DEFAULTS.get(key)
    if key == "algs":
        return _algs
    if key == "audience":
        return _audience
    if key in ("jwt_typ", "client_id_claims"):
        return _string_list
    if isinstance(default, bool):
        return _bool
    return _int if isinstance(default, int) else _text


_ISSUER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(IssuerSettings)}


def _issuer_secret(where: str, kwargs: dict[str, Any], env: Mapping[str, str]) -> str:
    """The introspection client secret from its file or environment variable (never inline)."""
    path, variable = kwargs.get("introspection_secret_file"), kwargs.get("introspection_secret_env")
    if path and variable:
        raise ConfigError(
            f"{where}.introspection_secret_file", "set either it or introspection_secret_env"
        )
    if path:
        return _read_secret_file(f"{where}.introspection_secret_file", path).decode("utf-8")
    if variable:
        secret = env.get(variable, "").strip()
        if not secret:
            raise ConfigError(f"{where}.introspection_secret_env", f"{variable} is not set")
        return secret
    return ""


def unknown_key_problem(key: str, known: list[str]) -> str:
    """ "unknown key" with the closest known key as a suggestion, or the list when none is close."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (known: {', '.join(known)})"


def _parse_issuers(
    value: object, base: Path, env: Mapping[str, str] | None = None
) -> tuple[IssuerSettings, ...]:
    if not isinstance(value, list):
        raise ConfigError("issuers", "must be a list of tables")
    return tuple(_issuer_entry(f"issuers[{i}]", entry, base, env) for i, entry in enumerate(value))


def parse_issuer_entry(
    entry: Mapping[str, Any],
    *,
    where: str = "issuer",
    base: Path = Path("."),
    environ: Mapping[str, str] | None = None,
) -> IssuerSettings:
    """One ``issuers`` entry (as a config file writes it), its preset applied, checked.

    For tools that look at one issuer (``dpop-verifier issuer check``); the service reads
    its issuers with :func:`load_settings`. Raises :class:`ConfigError`."""
    issuer = _issuer_entry(where, dict(entry), base, environ)
    _check_issuer(where, issuer)
    return issuer


def _issuer_entry(
    where: str, entry: object, base: Path, env: Mapping[str, str] | None
) -> IssuerSettings:
    allowed = [
        f.name for f in dataclasses.fields(IssuerSettings) if f.name != "introspection_secret"
    ]
    if not isinstance(entry, dict):
        raise ConfigError(where, "must be a table")
    for key in entry:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", unknown_key_problem(key, allowed))
    if "issuer" not in entry:
        raise ConfigError(f"{where}.issuer", "is required")
    entry = _with_preset(where, entry)
    kwargs: dict[str, Any] = {k: _issuer_parser(k)(f"{where}.{k}", v) for k, v in entry.items()}
    for key in _ISSUER_PATHS:
        if kwargs.get(key):
            kwargs[key] = str(base / kwargs[key])
    kwargs["introspection_secret"] = _issuer_secret(
        where, kwargs, os.environ if env is None else env
    )
    return IssuerSettings(**kwargs)


def _with_preset(where: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry laid over its ``preset`` (the file's keys win); unchanged without one."""
    name = entry.get("preset")
    if name is None:
        return entry
    if not isinstance(name, str) or name not in PRESETS:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"{where}.preset", f"unknown preset {name!r} (known: {known})")
    return {**PRESETS[name].settings, **entry}


def _audience(setting: str, value: object) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(dict.fromkeys(item.strip() for item in value))
    raise ConfigError(setting, "must be a string or a list of strings")


def _string_list(setting: str, value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(setting, "must be a list of strings")
    return tuple(dict.fromkeys(item.strip() for item in items))


def _parse_routes(value: object) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ConfigError("routes", "must be a list of tables")
    return tuple(MappingProxyType(r) for r in value)


def _text(setting: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(setting, "must be a string")
    return value.strip()


def _int(setting: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise ConfigError(setting, f"must be an integer, got {value!r}")


def _float(setting: str, value: object) -> float:
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise ConfigError(setting, f"must be a number, got {value!r}")
    return number


def _bool(setting: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
    raise ConfigError(setting, f"must be true or false, got {value!r}")


def _algs(setting: str, value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(a, str) for a in items):
        raise ConfigError(setting, "must be a list of algorithm names")
    return tuple(dict.fromkeys(a.strip() for a in items if a.strip()))


def _password(setting: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(setting, "must be a string")
    return value


def _secret(setting: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:  # the environment's bytes come back as they were (os.environ decodes with
            return value.encode("utf-8", "surrogateescape")  # surrogateescape)
        except UnicodeEncodeError:  # e.g. a lone surrogate escaped in a JSON file
            raise ConfigError(setting, "must be text (valid UTF-8)") from None
    raise ConfigError(setting, "must be a string")


def _log_level(setting: str, value: object) -> str:
    return _text(setting, value).upper()


def _lower(setting: str, value: object) -> str:
    return _text(setting, value).lower()


def _cidr_list(setting: str, value: object) -> tuple[str, ...]:
    """A comma list of addresses or CIDR blocks, each in canonical form (``10.0.0.0/8``)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(setting, "must be a comma-separated list of CIDR blocks")
    networks = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError as exc:
            raise ConfigError(setting, f"not a CIDR block: {item!r} ({exc})") from None
    return tuple(dict.fromkeys(networks))


def _plain_list(setting: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(i, str) for i in value):
        items = list(value)
    else:
        raise ConfigError(setting, "must be a comma-separated list")
    return tuple(i.strip() for i in items if i.strip())


def _lower_list(setting: str, value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(setting, "must be a comma-separated list")
    return tuple(i.strip().lower() for i in items if i.strip())


_PARSERS: dict[str, Callable[[str, object], Any]] = {
    "proof_algs": _algs,
    "nonce_required": _bool,
    "allow_explain": _bool,
    "replay_fail_open": _bool,
    "redis_password": _password,
    "redis_sentinel_password": _password,
    "nonce_secret": _secret,
    "nonce_previous_secret": _secret,
    "shutdown_grace_seconds": _float,
    "log_level": _log_level,
    "log_format": _lower,
    "decision_log": _lower,
    "decision_log_sample": _float,
    **{name: _lower for name in _SETTINGS_DEFAULTS if name.startswith("upstream_header_")},
    "trusted_forwarded_headers": _lower_list,
    "xfcc_trusted_by": _plain_list,
    "extauthz_client_cert": _lower,
    "http_client_cert_header": _lower,
    "http_client_cert_format": _lower,
    "http_trusted_proxies": _cidr_list,
    **{
        name: _int
        for name, default in _SETTINGS_DEFAULTS.items()
        if isinstance(default, int) and not isinstance(default, bool)
    },
}


# --- validation ----------------------------------------------------------------------------


def _validate(s: Settings) -> None:
    _check_address("DPOP_LISTEN", s.listen, required=True)
    _check_address("DPOP_HEALTH_LISTEN", s.health_listen)
    _check_address("DPOP_METRICS_LISTEN", s.metrics_listen)
    _check_address("DPOP_HTTP_LISTEN", s.http_listen)
    if s.http_listen.startswith("unix:"):
        raise ConfigError("DPOP_HTTP_LISTEN", "must be host:port (an HTTP endpoint)")
    others = (s.listen, s.health_listen, s.metrics_listen)
    if s.http_listen in others and s.http_listen and not s.http_listen.endswith(":0"):
        raise ConfigError("DPOP_HTTP_LISTEN", "must differ from the other listeners")
    _check_min("DPOP_HTTP_THREADS", s.http_threads, 1)
    _check_min("DPOP_HTTP_IDLE_TIMEOUT_SECONDS", s.http_idle_timeout_seconds, 1)
    _check_min("DPOP_HTTP_MAX_HEADER_FIELDS", s.http_max_header_fields, 8)
    if s.http_max_header_bytes <= s.max_proof_bytes + s.max_token_bytes:
        raise ConfigError(
            "DPOP_HTTP_MAX_HEADER_BYTES",
            f"must exceed DPOP_MAX_PROOF_BYTES + DPOP_MAX_TOKEN_BYTES "
            f"({s.max_proof_bytes + s.max_token_bytes}), or such requests fail with 431",
        )
    if s.metrics_listen.startswith("unix:"):
        raise ConfigError("DPOP_METRICS_LISTEN", "must be host:port (an HTTP endpoint)")
    if s.health_listen and s.health_listen == s.listen and not s.listen.endswith(":0"):
        raise ConfigError("DPOP_HEALTH_LISTEN", "must differ from DPOP_LISTEN")
    _check_replay_url(s.replay_url)
    _check_redis(s)

    _check_min("DPOP_REPLAY_TIMEOUT_MS", s.replay_timeout_ms, 1)
    _check_min("DPOP_MEMORY_REPLAY_MAX_ENTRIES", s.memory_replay_max_entries, 1)
    _check_min("DPOP_IAT_MAX_AGE_SECONDS", s.iat_max_age_seconds, 1)
    _check_min("DPOP_IAT_MAX_SKEW_SECONDS", s.iat_max_skew_seconds, 0)
    _check_min("DPOP_TOKEN_LEEWAY_SECONDS", s.token_leeway_seconds, 0)
    _check_min("DPOP_MAX_PROOF_BYTES", s.max_proof_bytes, 1)
    _check_min("DPOP_MAX_TOKEN_BYTES", s.max_token_bytes, 1)
    _check_min("DPOP_MAX_JTI_CHARS", s.max_jti_chars, 1)
    _check_min("DPOP_NONCE_LIFETIME_SECONDS", s.nonce_lifetime_seconds, 1)
    _check_min("DPOP_SHUTDOWN_GRACE_SECONDS", s.shutdown_grace_seconds, 0)
    _check_min("DPOP_MAX_MESSAGE_BYTES", s.max_message_bytes, 1)
    _check_min("DPOP_SERVER_THREADS", s.server_threads, 1)
    _check_min("DPOP_MAX_CONCURRENT_CALLS", s.max_concurrent_calls, 1)
    _check_min("DPOP_MAX_PENDING_CALLS", s.max_pending_calls, 1)
    _check_min("DPOP_RECEIVE_TIMEOUT_MS", s.receive_timeout_ms, 1)
    _check_min("DPOP_MAX_STREAMS_PER_CONNECTION", s.max_streams_per_connection, 1)
    _check_min("DPOP_MAX_CONNECTIONS", s.max_connections, 1)
    _check_min("DPOP_KEEPALIVE_SECONDS", s.keepalive_seconds, 1)
    _check_min("DPOP_KEEPALIVE_TIMEOUT_SECONDS", s.keepalive_timeout_seconds, 1)
    _check_min("DPOP_LIVENESS_STALL_SECONDS", s.liveness_stall_seconds, 1)
    _check_min("DPOP_WORKERS", s.workers, 1)
    if s.workers > 1 and s.http_listen:
        raise ConfigError(
            "DPOP_WORKERS",
            "more than 1 is not supported with DPOP_HTTP_LISTEN yet: run one process per "
            "container and scale with replicas",
        )
    if s.workers > 1 and "unix:" in (s.listen[:5], s.health_listen[:5]):
        raise ConfigError(
            "DPOP_WORKERS",
            "more than 1 needs TCP listeners (host:port): processes cannot share a unix socket",
        )
    if s.max_message_bytes <= s.max_proof_bytes + s.max_token_bytes:
        raise ConfigError(
            "DPOP_MAX_MESSAGE_BYTES",
            f"must exceed DPOP_MAX_PROOF_BYTES + DPOP_MAX_TOKEN_BYTES "
            f"({s.max_proof_bytes + s.max_token_bytes}), or such requests fail in transport",
        )

    _check_algs("DPOP_PROOF_ALGS", s.proof_algs)
    _check_nonce_secrets(s)
    _check_tls(s)
    if s.log_level not in LOG_LEVELS:
        raise ConfigError("DPOP_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}")
    if s.log_format not in LOG_FORMATS:
        raise ConfigError("DPOP_LOG_FORMAT", f"must be one of {', '.join(LOG_FORMATS)}")
    if s.decision_log not in DECISION_LOG_MODES:
        raise ConfigError("DPOP_DECISION_LOG", f"must be one of {', '.join(DECISION_LOG_MODES)}")
    if not 0.0 <= s.decision_log_sample <= 1.0:
        raise ConfigError("DPOP_DECISION_LOG_SAMPLE", "must be between 0 and 1")

    _check_routes(s)
    _check_upstream_headers(s)
    _check_forwarding(s)
    _check_client_certificates(s)

    seen: set[str] = set()
    for i, issuer in enumerate(s.issuers):
        _check_issuer(f"issuers[{i}]", issuer)
        if issuer.issuer in seen:
            raise ConfigError(f"issuers[{i}].issuer", f"duplicate issuer {issuer.issuer!r}")
        seen.add(issuer.issuer)
    opaque = [i for i, issuer in enumerate(s.issuers) if issuer.opaque_tokens]
    if len(opaque) > 1:
        raise ConfigError(
            f"issuers[{opaque[1]}].opaque_tokens",
            "only one issuer may resolve opaque tokens (they name no issuer)",
        )


def _check_min(setting: str, value: float, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(setting, f"must be at least {minimum}, got {value}")


def _check_address(setting: str, value: str, *, required: bool = False) -> None:
    if not value:
        if required:
            raise ConfigError(setting, "must not be empty")
        return
    if value.startswith("unix:"):
        if len(value) == len("unix:"):
            raise ConfigError(setting, "unix: needs a socket path")
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ConfigError(setting, f"must be host:port with a port 0-65535, got {value!r}")
    if host.startswith("[") != host.endswith("]"):
        raise ConfigError(setting, f"unbalanced brackets in {value!r}")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ConfigError(setting, f"not an IPv6 address: {host}") from None
    elif ":" in host:
        raise ConfigError(setting, f"write an IPv6 address in brackets, e.g. [::]:{port}")


def _check_replay_url(url: str) -> None:
    setting = "DPOP_REPLAY_URL"
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in REDIS_SCHEMES:
        try:
            parse_redis_url(url)  # its messages never contain the password
        except ValueError as exc:
            raise ConfigError(setting, str(exc).removeprefix(f"{setting}: ")) from None
        return
    try:
        parts: SplitResult = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise ConfigError(setting, f"not a valid URL: {redact_url(url)!r}") from None
    if parts.scheme.lower() != "memory":
        raise ConfigError(setting, f"scheme must be one of {', '.join(REPLAY_URL_SCHEMES)}://")
    if parts.netloc or parts.path.strip("/") or parts.query:
        raise ConfigError(setting, "memory:// takes no host, path or options")


def _check_redis(s: Settings) -> None:
    """Redis settings that cannot work with the chosen DPOP_REPLAY_URL are refused."""
    scheme = s.replay_url.partition("://")[0].lower()
    uses_redis = scheme in REDIS_SCHEMES
    uses_tls = uses_redis and scheme.startswith("rediss")
    _check_min("DPOP_REDIS_WAIT_REPLICAS", s.redis_wait_replicas, 0)
    _check_min("DPOP_REDIS_WAIT_TIMEOUT_MS", s.redis_wait_timeout_ms, 1)
    _check_min("DPOP_REDIS_RETRIES", s.redis_retries, 0)
    if s.redis_retries > 3:
        raise ConfigError("DPOP_REDIS_RETRIES", f"must be at most 3, got {s.redis_retries}")
    if not s.redis_key_prefix or any(c.isspace() for c in s.redis_key_prefix):
        raise ConfigError("DPOP_REDIS_KEY_PREFIX", "must be non-empty, without spaces")
    needs_redis = {
        "DPOP_REDIS_USERNAME": s.redis_username,
        "DPOP_REDIS_PASSWORD": s.redis_password,
        "DPOP_REDIS_WAIT_REPLICAS": s.redis_wait_replicas,
    }
    for setting, value in needs_redis.items():
        if value and not uses_redis:
            raise ConfigError(setting, "is set but DPOP_REPLAY_URL is not a Redis URL")
    sentinel_only = {
        "DPOP_REDIS_SENTINEL_USERNAME": s.redis_sentinel_username,
        "DPOP_REDIS_SENTINEL_PASSWORD": s.redis_sentinel_password,
    }
    for setting, value in sentinel_only.items():
        if value and not scheme.endswith("+sentinel"):
            raise ConfigError(setting, "needs a redis+sentinel:// or rediss+sentinel:// URL")
    tls_files = {
        "DPOP_REDIS_CA_FILE": s.redis_ca_file,
        "DPOP_REDIS_CERT_FILE": s.redis_cert_file,
        "DPOP_REDIS_KEY_FILE": s.redis_key_file,
    }
    for setting, path in tls_files.items():
        if not path:
            continue
        if not uses_tls:
            raise ConfigError(setting, "needs a TLS URL (rediss://, rediss+sentinel://, ...)")
        _check_file(setting, path)
    if bool(s.redis_cert_file) != bool(s.redis_key_file):
        missing = "DPOP_REDIS_KEY_FILE" if s.redis_cert_file else "DPOP_REDIS_CERT_FILE"
        raise ConfigError(missing, "DPOP_REDIS_CERT_FILE and DPOP_REDIS_KEY_FILE go together")


def _check_algs(setting: str, algs: tuple[str, ...]) -> None:
    if not algs:
        raise ConfigError(setting, "must name at least one algorithm")
    for alg in algs:
        if alg.lower() == "none":
            raise ConfigError(setting, "'none' is never allowed: proofs must be signed")
        if alg.upper().startswith("HS"):
            raise ConfigError(setting, f"symmetric algorithm {alg!r} is not allowed")
        if alg not in DEFAULT_ALGS:
            raise ConfigError(
                setting, f"unsupported algorithm {alg!r} (supported: {', '.join(DEFAULT_ALGS)})"
            )


def _check_nonce_secrets(s: Settings) -> None:
    for setting, secret in (
        ("DPOP_NONCE_SECRET", s.nonce_secret),
        ("DPOP_NONCE_PREVIOUS_SECRET", s.nonce_previous_secret),
    ):
        if secret and len(secret) < MIN_NONCE_SECRET_BYTES:
            raise ConfigError(setting, f"must be at least {MIN_NONCE_SECRET_BYTES} bytes long")
    if s.nonce_previous_secret and not s.nonce_secret:
        raise ConfigError("DPOP_NONCE_PREVIOUS_SECRET", "is set but DPOP_NONCE_SECRET is not")
    if s.nonce_required and not s.nonce_secret:
        raise ConfigError(
            "DPOP_NONCE_SECRET",
            "required when DPOP_NONCE_REQUIRED is true (or set DPOP_NONCE_SECRET_FILE)",
        )


def _check_tls(s: Settings) -> None:
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        missing = "DPOP_TLS_KEY_FILE" if s.tls_cert_file else "DPOP_TLS_CERT_FILE"
        raise ConfigError(missing, "DPOP_TLS_CERT_FILE and DPOP_TLS_KEY_FILE go together")
    if s.tls_client_ca_file and not s.tls_cert_file:
        raise ConfigError("DPOP_TLS_CLIENT_CA_FILE", "mTLS needs DPOP_TLS_CERT_FILE as well")
    for setting, path in (
        ("DPOP_TLS_CERT_FILE", s.tls_cert_file),
        ("DPOP_TLS_KEY_FILE", s.tls_key_file),
        ("DPOP_TLS_CLIENT_CA_FILE", s.tls_client_ca_file),
    ):
        if path:
            _check_file(setting, path)


def _check_file(setting: str, path: str) -> None:
    """A configured file must exist; a name the OS cannot even look up is named as such."""
    try:
        found = Path(path).is_file()
    except (OSError, ValueError):  # too long, a NUL in it
        raise ConfigError(setting, "not a usable file name") from None
    if not found:
        raise ConfigError(setting, f"no such file: {path}")


def _check_issuer(where: str, issuer: IssuerSettings) -> None:
    if not issuer.issuer:
        raise ConfigError(f"{where}.issuer", "must not be empty")
    audiences = issuer.audiences
    if audiences is not None and (not audiences or not all(audiences)):
        raise ConfigError(f"{where}.audience", "must not be empty (omit it to skip the check)")
    if audiences is not None and any(len(a) > 1024 for a in audiences):
        raise ConfigError(f"{where}.audience", "an audience is longer than 1024 characters")
    if not issuer.jwt_typ:
        raise ConfigError(f"{where}.jwt_typ", 'list at least one type ("" accepts none)')
    for typ in issuer.jwt_typ:
        if len(typ) > 64 or (typ and not _TYP.fullmatch(typ)) or typ.lower() == "dpop+jwt":
            raise ConfigError(f"{where}.jwt_typ", f"{typ!r} is not an access-token media type")
    if not issuer.client_id_claims or not all(
        _CLAIM_NAME.fullmatch(name) for name in issuer.client_id_claims
    ):
        raise ConfigError(f"{where}.client_id_claims", "must list claim names, e.g. client_id")
    key_sources = sum(map(bool, (issuer.jwks_file, issuer.jwks_uri, issuer.discovers)))
    if key_sources > 1:
        raise ConfigError(f"{where}.jwks_uri", "set at most one of jwks_file, jwks_uri, discovery")
    if key_sources == 0 and not issuer.introspects:
        raise ConfigError(
            f"{where}.jwks_uri",
            "set one of jwks_file, jwks_uri, discovery (or introspection_client_id)",
        )
    for key in ("jwks_file", "ca_file", "introspection_key_file"):
        path = getattr(issuer, key)
        if path:
            _check_file(f"{where}.{key}", path)
    for key in ("jwks_uri", "metadata_url", "introspection_endpoint"):
        try:
            uri = urlsplit(getattr(issuer, key))
        except ValueError:
            raise ConfigError(f"{where}.{key}", "not a valid URL") from None
        loopback = uri.hostname in ("localhost", "127.0.0.1", "::1")
        if getattr(issuer, key) and (
            not uri.hostname or not (uri.scheme == "https" or (uri.scheme == "http" and loopback))
        ):
            raise ConfigError(f"{where}.{key}", "must be https:// (http only to loopback)")
    _check_algs(f"{where}.algs", issuer.algs)
    _check_min(f"{where}.jwks_min_refresh_seconds", issuer.jwks_min_refresh_seconds, 1)
    _check_min(f"{where}.jwks_max_refresh_seconds", issuer.jwks_max_refresh_seconds, 1)
    if issuer.jwks_max_refresh_seconds < issuer.jwks_min_refresh_seconds:
        raise ConfigError(f"{where}.jwks_max_refresh_seconds", "must be >= the min")
    for key in ("jwks_refresh_seconds", "introspection_timeout_ms"):
        _check_min(f"{where}.{key}", getattr(issuer, key), 1)
    for key in (
        "jwks_max_stale_seconds",
        "unknown_kid_cooldown_seconds",
        "introspection_cache_seconds",
        "introspection_negative_cache_seconds",
    ):
        _check_min(f"{where}.{key}", getattr(issuer, key), 0)
    _check_introspection(where, issuer)


_TYP = re.compile(r"[A-Za-z0-9!#$&^_.+-]+(?:/[A-Za-z0-9!#$&^_.+-]+)?")
"""A media type (RFC 6838 §4.2 characters), with or without its ``application/``."""
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _check_introspection(where: str, issuer: IssuerSettings) -> None:
    """An introspection client is complete, and only introspecting issuers use its options."""
    if not issuer.introspects:
        for key in ("opaque_tokens", "introspect_jwts", "introspection_endpoint"):
            if getattr(issuer, key):
                raise ConfigError(f"{where}.{key}", "needs introspection_client_id")
        return
    if not issuer.introspection_endpoint and not issuer.discovers:
        raise ConfigError(
            f"{where}.introspection_endpoint", "set it, or discovery = true to read it"
        )
    method = issuer.introspection_auth
    if method not in INTROSPECTION_AUTH_METHODS:
        raise ConfigError(
            f"{where}.introspection_auth", f"one of {', '.join(INTROSPECTION_AUTH_METHODS)}"
        )
    if method == "private_key_jwt":
        if not issuer.introspection_key_file:
            raise ConfigError(f"{where}.introspection_key_file", "private_key_jwt needs a key")
        if issuer.introspection_key_alg:
            _check_algs(f"{where}.introspection_key_alg", (issuer.introspection_key_alg,))
    elif not issuer.introspection_secret:
        raise ConfigError(
            f"{where}.introspection_secret_file",
            f"{method} needs introspection_secret_file or introspection_secret_env",
        )


# --- routes and the ext_authz front door ---------------------------------------------------

FORWARDING_HEADERS = ("x-forwarded-proto", "x-forwarded-host", "forwarded")
# Headers an identity header must never be: the request's credentials, framing and routing.
_RESERVED_HEADERS = frozenset(
    {
        "authorization", "dpop", "host", "cookie", "content-length", "content-type",
        "transfer-encoding", "connection", "te", "upgrade", "keep-alive", "proxy-authorization",
        "x-forwarded-for", "x-request-id", *FORWARDING_HEADERS,
    }
)  # fmt: skip
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_AUTHORITY_KEY = re.compile(r"(?:\*|[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def _parse_base_urls(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError("public_base_urls", 'must be a table of "host[:port]" = "https://..."')
    return tuple((str(k).strip().lower(), v.strip().rstrip("/")) for k, v in value.items())


def _check_routes(s: Settings) -> None:
    try:
        parse_routes(s.routes, default=Policy(nonce_required=s.nonce_required))
    except RouteError as exc:
        raise ConfigError(exc.key, exc.problem) from None
    for i, entry in enumerate(s.routes):
        if entry.get("nonce_required") is True and not s.nonce_secret:
            raise ConfigError(f"routes[{i}].nonce_required", "needs DPOP_NONCE_SECRET (or _FILE)")


def _check_upstream_headers(s: Settings) -> None:
    seen: dict[str, str] = {}
    for f in dataclasses.fields(s):
        if not f.name.startswith("upstream_header_"):
            continue
        setting, name = "DPOP_" + f.name.upper(), getattr(s, f.name)
        if not name:
            continue  # not sent (a client's copy is still removed)
        if not _HEADER_NAME.fullmatch(name) or name.startswith("x-envoy-"):
            raise ConfigError(setting, f"{name!r} is not a plain lower-case header name")
        if name in _RESERVED_HEADERS:
            raise ConfigError(setting, f"{name!r} is reserved: it carries the request itself")
        if name in seen:
            raise ConfigError(setting, f"{name!r} is also {seen[name]}")
        seen[name] = setting


def _check_client_certificates(s: Settings) -> None:
    if s.extauthz_client_cert not in EXTAUTHZ_SOURCES:
        raise ConfigError(
            "DPOP_EXTAUTHZ_CLIENT_CERT", f"must be one of {', '.join(EXTAUTHZ_SOURCES)}"
        )
    if s.extauthz_client_cert == "xfcc" and not s.xfcc_trusted_by:
        raise ConfigError("DPOP_XFCC_TRUSTED_BY", "required with DPOP_EXTAUTHZ_CLIENT_CERT=xfcc")
    if s.http_client_cert_format not in HEADER_FORMATS:
        raise ConfigError(
            "DPOP_HTTP_CLIENT_CERT_FORMAT", f"must be one of {', '.join(HEADER_FORMATS)}"
        )
    header = s.http_client_cert_header
    if header and (not _HEADER_NAME.fullmatch(header) or header in _RESERVED_HEADERS):
        raise ConfigError("DPOP_HTTP_CLIENT_CERT_HEADER", f"{header!r} is not a usable header name")


def _check_forwarding(s: Settings) -> None:
    for header in s.trusted_forwarded_headers:
        if header not in FORWARDING_HEADERS:
            raise ConfigError(
                "DPOP_TRUSTED_FORWARDED_HEADERS",
                f"unknown header {header!r} (choose from {', '.join(FORWARDING_HEADERS)})",
            )
    keys: set[str] = set()
    for key, url in s.public_base_urls:
        where = f"public_base_urls.{key!r}"
        if not _AUTHORITY_KEY.fullmatch(key):
            raise ConfigError(where, 'the key must be "*" or a host[:port] as Envoy reports it')
        if key in keys:
            raise ConfigError(where, "duplicate host")
        keys.add(key)
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ConfigError(where, "not a valid URL") from None
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
            or "?" in url
            or "#" in url
        ):
            raise ConfigError(where, f"{url!r} must be http(s)://host[:port][/path], no query")
