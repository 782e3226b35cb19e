"""Front-door settings: the route table, the identity headers sent upstream, which forwarding
headers and public base URLs rebuild the target URI (ext_authz, forward auth), the forward-auth
listener's trusted proxies, and whether ``Verify`` may explain."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from verifier.config.values import (
    ConfigError,
    Parser,
    Section,
    check_file,
    check_min,
    parse_cidr_list,
    parse_lower,
    parse_lower_list,
    parse_plain_list,
)
from verifier.doors.client_certificate import EXTAUTHZ_SOURCES
from verifier.mtls import HEADER_FORMATS
from verifier.mtls.chain import load_trust_roots

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


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DoorSettings(Section):
    """What the front doors (Verify, ext_authz ``Check``, forward auth) are told besides the
    engine. Checks itself on construction; the routes' nonce policy depends on the proof
    settings and is :class:`~verifier.config.Settings`' to check."""

    allow_explain: bool = False
    routes: tuple[Mapping[str, Any], ...] = ()
    """The config file's ``routes`` (file only)."""
    upstream_header_jkt: str = "x-dpop-jkt"
    upstream_header_subject: str = "x-auth-subject"
    upstream_header_client_id: str = "x-auth-client-id"
    upstream_header_scope: str = "x-auth-scope"
    upstream_header_issuer: str = "x-auth-issuer"
    upstream_header_report_only: str = "x-dpop-report-only"
    trusted_forwarded_headers: tuple[str, ...] = ()
    public_base_urls: tuple[tuple[str, str], ...] = ()
    """The config file's ``public_base_urls`` (file only): (host key, base URL) pairs."""
    http_trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    http_max_header_fields: int = 100
    extauthz_client_cert: str = "peer"
    """Where ``Check`` reads the client certificate of mTLS-bound tokens (RFC 8705)."""
    xfcc_trusted_by: tuple[str, ...] = ()
    """The ``By=`` URIs of the proxies whose ``x-forwarded-client-cert`` element is believed."""
    http_client_cert_header: str = ""
    """The header a trusted proxy puts the client certificate in, for forward auth (off: "")."""
    http_client_cert_format: str = "escaped-pem"
    client_cert_ca_file: str = ""
    """PEM CA certificates: when set, a client certificate must also chain to one of them
    (RFC 5280, clientAuth); off by default, since RFC 8705 §2.2 binds self-signed ones too."""

    PARSERS: ClassVar[Mapping[str, Parser]] = {
        "upstream_header_jkt": parse_lower,
        "upstream_header_subject": parse_lower,
        "upstream_header_client_id": parse_lower,
        "upstream_header_scope": parse_lower,
        "upstream_header_issuer": parse_lower,
        "upstream_header_report_only": parse_lower,
        "trusted_forwarded_headers": parse_lower_list,
        "http_trusted_proxies": parse_cidr_list,
        "xfcc_trusted_by": parse_plain_list,
        "extauthz_client_cert": parse_lower,
        "http_client_cert_header": parse_lower,
        "http_client_cert_format": parse_lower,
    }

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> dict[str, Any]:
        """This section's values in ``raw`` (keyed by option name), parsed (``routes`` and
        ``public_base_urls`` as the config file writes them)."""
        file_only = {"routes": parse_routes_entries, "public_base_urls": parse_base_urls}
        kwargs = super(DoorSettings, cls).parse(
            {k: v for k, v in raw.items() if k not in file_only}
        )
        for key, parse in file_only.items():
            if key in raw:
                kwargs[key] = parse(raw[key])
        return kwargs

    def __post_init__(self) -> None:
        check_min("DPOP_HTTP_MAX_HEADER_FIELDS", self.http_max_header_fields, 8)
        self._check_upstream_headers()
        self._check_forwarding()
        self._check_client_certificates()

    def _check_client_certificates(self) -> None:
        if self.extauthz_client_cert not in EXTAUTHZ_SOURCES:
            raise ConfigError(
                "DPOP_EXTAUTHZ_CLIENT_CERT", f"must be one of {', '.join(EXTAUTHZ_SOURCES)}"
            )
        if self.extauthz_client_cert == "xfcc" and not self.xfcc_trusted_by:
            raise ConfigError(
                "DPOP_XFCC_TRUSTED_BY", "required with DPOP_EXTAUTHZ_CLIENT_CERT=xfcc"
            )
        if self.http_client_cert_format not in HEADER_FORMATS:
            raise ConfigError(
                "DPOP_HTTP_CLIENT_CERT_FORMAT", f"must be one of {', '.join(HEADER_FORMATS)}"
            )
        if self.client_cert_ca_file:
            check_file("DPOP_CLIENT_CERT_CA_FILE", self.client_cert_ca_file)
            try:
                load_trust_roots(Path(self.client_cert_ca_file).read_bytes())
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    "DPOP_CLIENT_CERT_CA_FILE", f"no usable PEM CA certificate: {exc}"
                ) from None
        header = self.http_client_cert_header
        if header and (not _HEADER_NAME.fullmatch(header) or header in _RESERVED_HEADERS):
            raise ConfigError(
                "DPOP_HTTP_CLIENT_CERT_HEADER", f"{header!r} is not a usable header name"
            )

    def _check_upstream_headers(self) -> None:
        seen: dict[str, str] = {}
        for f in dataclasses.fields(self):
            if not f.name.startswith("upstream_header_"):
                continue
            setting, name = "DPOP_" + f.name.upper(), getattr(self, f.name)
            if not name:
                continue  # not sent (a client's copy is still removed)
            if not _HEADER_NAME.fullmatch(name) or name.startswith("x-envoy-"):
                raise ConfigError(setting, f"{name!r} is not a plain lower-case header name")
            if name in _RESERVED_HEADERS:
                raise ConfigError(setting, f"{name!r} is reserved: it carries the request itself")
            if name in seen:
                raise ConfigError(setting, f"{name!r} is also {seen[name]}")
            seen[name] = setting

    def _check_forwarding(self) -> None:
        for header in self.trusted_forwarded_headers:
            if header not in FORWARDING_HEADERS:
                raise ConfigError(
                    "DPOP_TRUSTED_FORWARDED_HEADERS",
                    f"unknown header {header!r} (choose from {', '.join(FORWARDING_HEADERS)})",
                )
        keys: set[str] = set()
        for key, url in self.public_base_urls:
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


def parse_base_urls(value: object) -> tuple[tuple[str, str], ...]:
    """The config file's ``public_base_urls`` table as (host key, base URL) pairs."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError("public_base_urls", 'must be a table of "host[:port]" = "https://..."')
    return tuple((str(k).strip().lower(), v.strip().rstrip("/")) for k, v in value.items())


def parse_routes_entries(value: object) -> tuple[Mapping[str, Any], ...]:
    """The config file's ``routes`` list, each entry read-only (checked with the settings)."""
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ConfigError("routes", "must be a list of tables")
    return tuple(MappingProxyType(r) for r in value)
