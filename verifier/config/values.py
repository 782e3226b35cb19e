"""The vocabulary every settings section shares: :class:`ConfigError`, the parsers that turn a
raw value (a string from the environment or the command line, or a value from a config file)
into a typed one, and the generic checks (minimums, addresses, files, algorithms)."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from verifier.domain.uri import redact_url as redact_url

DEFAULT_ALGS: tuple[str, ...] = (
    "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
    "RS256", "RS384", "RS512", "EdDSA", "Ed25519",
)  # fmt: skip
"""The asymmetric JWS algorithms this service can verify (proofs and access tokens)."""

Parser = Callable[[str, object], Any]
"""Turns a raw value into a typed one; gets the setting's name for its error message."""


class ConfigError(Exception):
    """The configuration is invalid. ``setting`` names the variable or key at fault."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


def env_name(name: str) -> str:
    """The environment variable of the setting ``name`` (``listen`` -> ``DPOP_LISTEN``)."""
    return "DPOP_" + name.upper()


# --- sections ------------------------------------------------------------------------------


def parse_fields(
    section: type, raw: Mapping[str, object], parsers: Mapping[str, Parser]
) -> dict[str, Any]:
    """The fields of the dataclass ``section`` found in ``raw``, each parsed: by its entry in
    ``parsers``, else by the type of its default (bool, int, float; text otherwise)."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        if f.name not in raw:
            continue
        parser = parsers.get(f.name) or _parser_for(f.default)
        kwargs[f.name] = parser(env_name(f.name), raw[f.name])
    return kwargs


def _parser_for(default: object) -> Parser:
    if isinstance(default, bool):
        return parse_bool
    if isinstance(default, int):
        return parse_int
    if isinstance(default, float):
        return parse_float
    return parse_text


def secrets_from_files(
    raw: Mapping[str, object], sources: Mapping[str, str], *, text: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Secrets read from their ``*_file`` settings (``sources``: secret -> its file setting);
    a secret and its file together are refused. Secrets named in ``text`` are decoded."""
    kwargs: dict[str, Any] = {}
    for name, file_key in sources.items():
        if name in raw and file_key in raw:
            raise ConfigError(
                env_name(file_key), f"set either {env_name(name)} or {env_name(file_key)}, not both"
            )
        if file_key in raw:
            secret = read_secret_file(env_name(file_key), raw[file_key])
            kwargs[name] = secret.decode("utf-8") if name in text else secret
    return kwargs


def redacted_repr(obj: object) -> str:
    """``Name(field=value, ...)`` with secrets shown as ``<set>``/``<unset>`` and URLs without
    their password (fields marked ``secret`` or ``url`` in their metadata)."""
    parts = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if f.metadata.get("secret"):
            shown = "<set>" if value else "<unset>"
        elif f.metadata.get("url"):
            shown = repr(redact_url(value))
        else:
            shown = repr(value)
        parts.append(f"{f.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"


SECRET: Mapping[str, Any] = {"secret": True}
"""Field metadata of a secret: never shown."""
URL: Mapping[str, Any] = {"url": True}
"""Field metadata of a URL that may carry a password: shown without it."""


# --- parsers -------------------------------------------------------------------------------


def parse_text(setting: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(setting, "must be a string")
    return value.strip()


def parse_int(setting: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise ConfigError(setting, f"must be an integer, got {value!r}")


def parse_float(setting: str, value: object) -> float:
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise ConfigError(setting, f"must be a number, got {value!r}")
    return number


def parse_bool(setting: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
    raise ConfigError(setting, f"must be true or false, got {value!r}")


def parse_algs(setting: str, value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(a, str) for a in items):
        raise ConfigError(setting, "must be a list of algorithm names")
    return tuple(dict.fromkeys(a.strip() for a in items if a.strip()))


def parse_password(setting: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(setting, "must be a string")
    return value


def parse_secret(setting: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:  # the environment's bytes come back as they were (os.environ decodes with
            return value.encode("utf-8", "surrogateescape")  # surrogateescape)
        except UnicodeEncodeError:  # e.g. a lone surrogate escaped in a JSON file
            raise ConfigError(setting, "must be text (valid UTF-8)") from None
    raise ConfigError(setting, "must be a string")


def parse_upper(setting: str, value: object) -> str:
    return parse_text(setting, value).upper()


def parse_lower(setting: str, value: object) -> str:
    return parse_text(setting, value).lower()


def parse_plain_list(setting: str, value: object) -> tuple[str, ...]:
    """A comma-separated list (or a list in the config file), items kept as written."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(i, str) for i in value):
        items = list(value)
    else:
        raise ConfigError(setting, "must be a comma-separated list")
    return tuple(i.strip() for i in items if i.strip())


def parse_lower_list(setting: str, value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(setting, "must be a comma-separated list")
    return tuple(i.strip().lower() for i in items if i.strip())


def parse_string_list(setting: str, value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(setting, "must be a list of strings")
    return tuple(dict.fromkeys(item.strip() for item in items))


def parse_cidr_list(setting: str, value: object) -> tuple[str, ...]:
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


def read_secret_file(setting: str, value: object) -> bytes:
    path = parse_text(setting, value)
    try:
        secret = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
    except ValueError:  # a NUL in the path
        raise ConfigError(setting, "not a usable file name") from None
    if not secret:
        raise ConfigError(setting, f"{path} is empty")
    return secret


# --- checks --------------------------------------------------------------------------------


def check_min(setting: str, value: float, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(setting, f"must be at least {minimum}, got {value}")


def check_address(setting: str, value: str, *, required: bool = False) -> None:
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


def check_file(setting: str, path: str) -> None:
    """A configured file must exist; a name the OS cannot even look up is named as such."""
    try:
        found = Path(path).is_file()
    except (OSError, ValueError):  # too long, a NUL in it
        raise ConfigError(setting, "not a usable file name") from None
    if not found:
        raise ConfigError(setting, f"no such file: {path}")


def check_algs(setting: str, algs: tuple[str, ...]) -> None:
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


def unknown_key_problem(key: str, known: list[str]) -> str:
    """ "unknown key" with the closest known key as a suggestion, or the list when none is close."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (known: {', '.join(known)})"


class Section:
    """A settings section: a frozen dataclass whose fields are its options (one name per
    setting: the field, the config-file key, ``DPOP_`` + its upper case). :meth:`parse` reads
    the section's options from the layered raw values, each by its :attr:`PARSERS` entry (else
    by the field's type), and its secrets from their ``*_file`` options; ``repr`` hides secrets.
    A section checks itself in ``__post_init__``."""

    __slots__ = ()

    PARSERS: ClassVar[Mapping[str, Parser]] = {}
    SECRET_FILES: ClassVar[Mapping[str, str]] = {}
    """Secret -> the option naming the file it may be read from instead."""
    TEXT_SECRETS: ClassVar[bool] = False
    """The secrets are text (decoded from their files), not bytes."""

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> dict[str, Any]:
        """This section's values in ``raw`` (keyed by option name), parsed."""
        kwargs = parse_fields(cls, raw, cls.PARSERS)
        if cls.SECRET_FILES:
            text = frozenset(cls.SECRET_FILES) if cls.TEXT_SECRETS else frozenset()
            kwargs.update(secrets_from_files(raw, cls.SECRET_FILES, text=text))
        return kwargs

    def __repr__(self) -> str:
        return redacted_repr(self)
