"""Normalization of HTTP target URIs for the ``htu`` comparison (RFC 9449 §4.3 (9)).

RFC 9449 compares ``htu`` with the target URI "ignoring any query and fragment parts" after
syntax-based and scheme-based normalization (RFC 3986 §6.2.2 and §6.2.3). This module is the one
place where that happens; both sides of the comparison go through :func:`normalize_target_uri`.
Route selection starts from the same normalization (:func:`split_target_uri`), and compares
hosts in the form of :func:`canonical_host`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_URI = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?[^#]*)?(?:#.*)?", re.DOTALL)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 §3.3 pchar (without pct-encoded) plus "/".
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")

MAX_URI_CHARS = 8192


class InvalidUri(ValueError):
    """The value is not an absolute http(s) URI that can be compared."""


def _normalize_percent(text: str) -> str:
    """RFC 3986 §6.2.2.1-2: upper-case hex digits, decode octets of unreserved characters."""
    if "%" in _PCT.sub("", text):
        raise InvalidUri("invalid percent-encoding")

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _PCT.sub(fix, text)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    output: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./") or path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if output:
                output.pop()
        elif path == "/..":
            path = "/"
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            start = 1 if path.startswith("/") else 0
            end = path.find("/", start)
            end = len(path) if end == -1 else end
            output.append(path[:end])
            path = path[end:]
    return "".join(output)


def split_host_port(authority: str) -> tuple[str, str]:
    """The host and the port (``""`` when absent) of an authority without userinfo; an IPv6
    literal keeps its brackets. Neither is validated here."""
    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            raise InvalidUri("unterminated IPv6 literal")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidUri("invalid authority")
        return host, rest[1:]
    host, colon, port = authority.rpartition(":")
    return (host, port) if colon else (authority, "")


def canonical_host(host: str) -> str:
    """``host`` as routes and public base URLs compare it, the request's and the configured
    ones alike: lower-case, one trailing dot removed (``api.example.com.`` is the fully
    qualified spelling of ``api.example.com``, RFC 1034 §3.1).

    ``htu`` keeps the dot (RFC 3986 §6.2 does not remove it), so that a proof is accepted only
    for the spelling it signed.
    """
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


def split_canonical_authority(authority: str) -> tuple[str, int | None]:
    """The :func:`canonical_host` and the port (None when absent) of ``authority``: how a
    request's host is compared with a configured one (routes, public base URLs). Raise
    :class:`InvalidUri` when the port is not a number."""
    host, port = split_host_port(authority)
    if port and not (port.isascii() and port.isdigit()):
        raise InvalidUri("invalid port")
    return canonical_host(host), int(port) if port else None


def default_port(scheme: str) -> int | None:
    """The default port of ``http`` and ``https`` (RFC 9110 §4.2); None for other schemes."""
    port = _DEFAULT_PORTS.get(scheme.lower())
    return int(port) if port else None


def _normalize_authority(scheme: str, authority: str) -> str:
    if "@" in authority:
        raise InvalidUri("userinfo is not allowed")
    host, port = split_host_port(authority)
    if host.startswith("[") and not _IPV6.fullmatch(host):
        raise InvalidUri("invalid IPv6 literal")
    if not host or not (host.startswith("[") or _REG_NAME.fullmatch(host)):
        raise InvalidUri("invalid host")
    if port:
        if not port.isascii() or not port.isdigit() or int(port) > 65535:
            raise InvalidUri("invalid port")
        port = str(int(port))
    host = host.lower()
    if not port or port == _DEFAULT_PORTS[scheme]:  # RFC 3986 §6.2.3
        return host
    return f"{host}:{port}"


def normalize_target_uri(uri: str) -> str:
    """Return the normalized ``scheme://authority/path`` of an absolute http(s) URI.

    Query and fragment are dropped; scheme and host are lower-cased; percent-encodings are
    normalized; dot segments are removed; a default port and an empty path are normalized away.
    Raise :class:`InvalidUri` for anything else (other schemes, userinfo, bad characters).

    Pure, so results for URIs up to :data:`CACHED_URI_CHARS` are remembered (an LRU of
    :data:`CACHE_ENTRIES`): the same target and ``htu`` come back on every request.
    """
    if len(uri) <= CACHED_URI_CHARS:
        return _normalize_cached(uri)
    return _normalize(uri)


@dataclass(frozen=True, slots=True)
class TargetUri:
    """A target URI normalized by :func:`normalize_target_uri`, in parts."""

    scheme: str
    host: str
    """Lower-case; an IPv6 literal keeps its brackets."""
    port: int
    """The explicit port, or the scheme's default one (RFC 3986 §6.2.3)."""
    path: str
    """Percent-encoding normalized and dot segments removed (RFC 3986 §6.2.2)."""


def split_target_uri(uri: str) -> TargetUri:
    """:func:`normalize_target_uri` of ``uri``, in parts; raise :class:`InvalidUri`."""
    scheme, _, rest = normalize_target_uri(uri).partition("://")
    slash = rest.index("/")  # a normalized URI always has a path
    host, port = split_host_port(rest[:slash])
    return TargetUri(scheme, host, int(port or _DEFAULT_PORTS[scheme]), rest[slash:])


CACHED_URI_CHARS = 512
CACHE_ENTRIES = 4096
"""At most 4,096 x 512 characters (about 4 MiB with the results) held by the cache."""


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def _normalize_cached(uri: str) -> str:
    return _normalize(uri)


def _normalize(uri: str) -> str:
    if len(uri) > MAX_URI_CHARS or not uri.isascii():
        raise InvalidUri("too long or not ASCII")
    match = _URI.fullmatch(uri)
    if match is None:
        raise InvalidUri("not an absolute URI")
    scheme, authority, path = match.group(1).lower(), match.group(2), match.group(3)
    if scheme not in _DEFAULT_PORTS:
        raise InvalidUri("scheme must be http or https")
    if not _PATH_CHARS.fullmatch(path):
        raise InvalidUri("invalid characters in path")
    path = remove_dot_segments(_normalize_percent(path)) or "/"
    return f"{scheme}://{_normalize_authority(scheme, authority)}{path}"


def redact_url(url: str) -> str:
    """``url`` with any password in its user-info replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
