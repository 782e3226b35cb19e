"""The public target URI of a request seen by a proxy: what a proof's ``htu`` is compared with.

A client signs the URL it used (RFC 9449 §4.2 ``htu``). A sidecar behind a load balancer or TLS
terminator may see another scheme, host or path prefix. :func:`public_target_uri` rebuilds the
public URL, in this order:

1. a **public base URL** configured for the host Envoy reports (or for ``*``): used as is, and
   every forwarding header is ignored. Hosts are compared as routes compare them: lower-case,
   one trailing dot removed, the scheme's default port implied (``svc.:80`` is ``svc``);
2. otherwise the scheme and host **Envoy reports**, each replaced by a forwarding header only
   when the operator trusts that header: ``Forwarded`` (RFC 7239 ``proto=``, ``host=``) first,
   then ``X-Forwarded-Proto`` / ``X-Forwarded-Host``. Of a header with several values (one per
   proxy hop) the **last** one counts: it was written by the proxy nearest to Envoy, the one the
   operator trusts. Values that are not a plain ``http``/``https`` scheme or a plain host are
   ignored.

The path is the request target as received (undecoded); query and fragment are dropped later by
:func:`verifier.domain.uri.normalize_target_uri`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from verifier.domain.uri import InvalidUri, default_port, split_canonical_authority
from verifier.dpop.request import strip_ows

X_FORWARDED_PROTO = "x-forwarded-proto"
X_FORWARDED_HOST = "x-forwarded-host"
FORWARDED = "forwarded"
FORWARDING_HEADERS = (X_FORWARDED_PROTO, X_FORWARDED_HOST, FORWARDED)
"""The headers an operator may choose to trust (lower-case)."""

_SCHEMES = frozenset({"http", "https"})
# RFC 3986 reg-name / IP literal, with an optional port: nothing that could end the authority.
_HOST = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+;=]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True)
class PublicUrlOptions:
    """How to rebuild the public URL (from the settings; see the module docstring)."""

    trusted_headers: frozenset[str] = frozenset()
    """A subset of :data:`FORWARDING_HEADERS`."""
    public_base_urls: Mapping[str, str] = field(default_factory=dict)
    """Authority as Envoy reports it (or ``*``) -> ``scheme://host[:port][/prefix]`` without a
    trailing slash. Keys are kept in canonical form (see :func:`canonical_authority_key`)."""

    def __post_init__(self) -> None:
        bases = {canonical_authority_key(k): v for k, v in self.public_base_urls.items()}
        object.__setattr__(self, "public_base_urls", bases)


def public_target_uri(
    scheme: str,
    authority: str,
    path: str,
    headers: Mapping[str, Iterable[str]],
    options: PublicUrlOptions,
) -> str:
    """The public target URI, or ``""`` when the request target is not an absolute path (the
    engine then denies the request as ``request_invalid``).

    ``headers`` maps lower-case names to every value received (each may be comma-joined).
    """
    if not path.startswith("/"):
        return ""
    base = _public_base(options.public_base_urls, scheme, authority)
    if base:
        return base + path

    proto, host = "", ""
    trusted = options.trusted_headers
    if FORWARDED in trusted:
        proto, host = _last_forwarded(headers.get(FORWARDED, ()))
    if not proto and X_FORWARDED_PROTO in trusted:
        proto = _last_value(headers.get(X_FORWARDED_PROTO, ()))
    if not host and X_FORWARDED_HOST in trusted:
        host = _last_value(headers.get(X_FORWARDED_HOST, ()))
    proto = proto.lower() if proto.lower() in _SCHEMES else scheme
    host = host if _HOST.fullmatch(host) else authority
    return f"{proto}://{host}{path}"


def canonical_authority_key(authority: str) -> str:
    """``authority`` (``host[:port]`` or ``*``) in the form the public base URLs are keyed by:
    :func:`~verifier.domain.uri.canonical_host`, and the port as a number when there is one."""
    if authority == "*":
        return authority
    try:
        host, port = split_canonical_authority(authority)
    except InvalidUri:
        return authority.lower()
    return host if port is None else f"{host}:{port}"


def _public_base(bases: Mapping[str, str], scheme: str, authority: str) -> str:
    """The base URL for ``authority`` reached with ``scheme``, else the one for ``*``."""
    try:
        host, port = split_canonical_authority(authority)
    except InvalidUri:
        return bases.get(authority.lower()) or bases.get("*", "")
    default = default_port(scheme)
    if port is None or port == default:  # "svc" and "svc:443" are one authority for https
        keys = [host] if default is None else [host, f"{host}:{default}"]
    else:
        keys = [f"{host}:{port}"]
    return next((bases[key] for key in keys if key in bases), bases.get("*", ""))


def _last_value(values: Iterable[str]) -> str:
    """The last element of a comma-separated list header (several lines count as one list)."""
    items = [strip_ows(item) for value in values for item in value.split(",")]
    return items[-1] if items else ""


def _last_forwarded(values: Iterable[str]) -> tuple[str, str]:
    """``proto`` and ``host`` of the last ``Forwarded`` element (RFC 7239 §4)."""
    elements = [element for value in values for element in _split_quoted(value, ",")]
    if not elements:
        return "", ""
    params: dict[str, str] = {}
    for pair in _split_quoted(elements[-1], ";"):
        name, sep, value = pair.partition("=")
        name, value = strip_ows(name).lower(), strip_ows(value)
        if not sep or not _TOKEN.fullmatch(name):
            continue
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(name, value)
    return params.get("proto", ""), params.get("host", "")


def _split_quoted(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside RFC 9110 quoted-strings; empty parts are dropped."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [part for part in map(strip_ows, parts) if part]
