"""The service's settings: read once at start-up into one frozen, validated :class:`Settings`,
made of typed sections that parse and check themselves:

* :mod:`~verifier.config.server` (``settings.server``): listeners, TLS, limits, threads, workers;
* :mod:`~verifier.config.replay` (``settings.replay``): the replay store and Redis;
* :mod:`~verifier.config.proof` (``settings.proof``): algorithms, ``iat``, leeway, sizes, nonces;
* :mod:`~verifier.config.doors` (``settings.doors``): routes, identity headers, forwarding,
  forward-auth proxies, explain;
* :mod:`~verifier.config.logs` (``settings.log``): service log and decision log;
* :mod:`~verifier.config.issuers` (``settings.issuers``): trusted access-token issuers;
* :mod:`~verifier.config.telemetry`: the standard ``OTEL_*`` variables (read on their own).

A section's fields carry their option's name (``DPOP_REPLAY_URL`` is
``settings.replay.replay_url``); :mod:`~verifier.config.load` reads the layers, and
:mod:`~verifier.config.values` holds the shared parsers and checks.

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

from verifier.config.doors import FORWARDING_HEADERS, DoorSettings
from verifier.config.issuers import INTROSPECTION_AUTH_METHODS, IssuerSettings, parse_issuer_entry
from verifier.config.load import (
    _FILE_ONLY_KEYS,
    OPTIONS,
    OTHER_VARIABLES,
    Option,
    check_environment_names,
    flag_of,
    is_kubernetes_service_link,
    load_settings,
    options_markdown,
    source_of,
)
from verifier.config.logs import DECISION_LOG_MODES, LOG_FORMATS, LOG_LEVELS, LogSettings
from verifier.config.proof import MIN_NONCE_SECRET_BYTES, ProofSettings
from verifier.config.replay import REPLAY_URL_SCHEMES, ReplaySettings
from verifier.config.server import ServerSettings
from verifier.config.settings import Settings
from verifier.config.values import (
    DEFAULT_ALGS,
    ConfigError,
    redact_url,
    unknown_key_problem,
)

__all__ = [
    "DECISION_LOG_MODES",
    "DEFAULT_ALGS",
    "FORWARDING_HEADERS",
    "INTROSPECTION_AUTH_METHODS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MIN_NONCE_SECRET_BYTES",
    "OPTIONS",
    "OTHER_VARIABLES",
    "REPLAY_URL_SCHEMES",
    "_FILE_ONLY_KEYS",
    "ConfigError",
    "DoorSettings",
    "IssuerSettings",
    "LogSettings",
    "Option",
    "ProofSettings",
    "ReplaySettings",
    "ServerSettings",
    "Settings",
    "check_environment_names",
    "flag_of",
    "is_kubernetes_service_link",
    "load_settings",
    "options_markdown",
    "parse_issuer_entry",
    "redact_url",
    "source_of",
    "unknown_key_problem",
]
