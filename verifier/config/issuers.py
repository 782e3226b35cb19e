"""Trusted access-token issuers: :class:`IssuerSettings` (one ``issuers`` entry of the config
file), how an entry is read (its preset applied, paths made absolute, its client secret read)
and how it is checked. See docs/token-sources.md."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from verifier.config.values import (
    DEFAULT_ALGS,
    ConfigError,
    check_algs,
    check_file,
    check_min,
    parse_algs,
    parse_bool,
    parse_int,
    parse_string_list,
    parse_text,
    read_secret_file,
    unknown_key_problem,
)
from verifier.tokens.presets import PRESETS

INTROSPECTION_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


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

    def check(self, where: str) -> None:
        """Raise :class:`ConfigError` naming ``where`` (``issuers[0]``) and the key at fault
        when this issuer cannot work as configured."""
        _check_issuer(where, self)

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


_ISSUER_PATHS = ("jwks_file", "ca_file", "introspection_secret_file", "introspection_key_file")


def _issuer_parser(key: str) -> Callable[[str, object], Any]:
    default = _ISSUER_DEFAULTS.get(key)
    if key == "algs":
        return parse_algs
    if key == "audience":
        return _audience
    if key in ("jwt_typ", "client_id_claims"):
        return parse_string_list
    if isinstance(default, bool):
        return parse_bool
    return parse_int if isinstance(default, int) else parse_text


_ISSUER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(IssuerSettings)}


def _issuer_secret(where: str, kwargs: dict[str, Any], env: Mapping[str, str]) -> str:
    """The introspection client secret from its file or environment variable (never inline)."""
    path, variable = kwargs.get("introspection_secret_file"), kwargs.get("introspection_secret_env")
    if path and variable:
        raise ConfigError(
            f"{where}.introspection_secret_file", "set either it or introspection_secret_env"
        )
    if path:
        return read_secret_file(f"{where}.introspection_secret_file", path).decode("utf-8")
    if variable:
        secret = env.get(variable, "").strip()
        if not secret:
            raise ConfigError(f"{where}.introspection_secret_env", f"{variable} is not set")
        return secret
    return ""


def parse_issuers(
    value: object, base: Path, env: Mapping[str, str] | None = None
) -> tuple[IssuerSettings, ...]:
    """The config file's ``issuers`` list (paths relative to ``base``); not yet checked."""
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
    issuer.check(where)
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
            check_file(f"{where}.{key}", path)
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
    check_algs(f"{where}.algs", issuer.algs)
    check_min(f"{where}.jwks_min_refresh_seconds", issuer.jwks_min_refresh_seconds, 1)
    check_min(f"{where}.jwks_max_refresh_seconds", issuer.jwks_max_refresh_seconds, 1)
    if issuer.jwks_max_refresh_seconds < issuer.jwks_min_refresh_seconds:
        raise ConfigError(f"{where}.jwks_max_refresh_seconds", "must be >= the min")
    for key in ("jwks_refresh_seconds", "introspection_timeout_ms"):
        check_min(f"{where}.{key}", getattr(issuer, key), 1)
    for key in (
        "jwks_max_stale_seconds",
        "unknown_kid_cooldown_seconds",
        "introspection_cache_seconds",
        "introspection_negative_cache_seconds",
    ):
        check_min(f"{where}.{key}", getattr(issuer, key), 0)
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
            check_algs(f"{where}.introspection_key_alg", (issuer.introspection_key_alg,))
    elif not issuer.introspection_secret:
        raise ConfigError(
            f"{where}.introspection_secret_file",
            f"{method} needs introspection_secret_file or introspection_secret_env",
        )
