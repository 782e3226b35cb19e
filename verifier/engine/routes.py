"""Per-route enforcement policy: which :class:`Policy` applies to a request's host and path.

Routes come from the config file (``routes = [{host, path_prefix, mode, nonce_required}]``) and
are resolved the same way for every front door, from the request's target URI:

* ``host`` is ``*`` (any host) or one host name, matched case-insensitively against the target
  URI's host; a host with a port (``api.example.com:8443``) must match the port too.
* ``path_prefix`` matches whole path segments: ``/api`` matches ``/api`` and ``/api/orders``,
  never ``/apiv2``. The longest matching prefix wins; between equally long prefixes, an exact
  host wins over ``*``. With no match, the default applies: ``require`` with the global nonce
  setting.
* The path is normalized first (RFC 3986 dot segments and percent-encoding). A path that a
  server could read two ways (``%2F`` or ``%5C`` encoded separators, backslashes, repeated
  slashes) is resolved both ways and the stricter policy wins, so an encoded path can never
  select a weaker route than the one the upstream will serve.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from verifier.dpop.htu import InvalidUri, normalize_target_uri, remove_dot_segments
from verifier.engine.model import Mode, Policy

ROUTE_KEYS = ("host", "path_prefix", "mode", "nonce_required", "name")
DEFAULT_ROUTE_NAME = "default"

# Weakest first: a stricter policy has a higher rank.
_STRICTNESS = {Mode.OFF: 0, Mode.REPORT_ONLY: 1, Mode.ALLOW_BEARER: 2, Mode.REQUIRE: 3}
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?")
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]")
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)
_SLASHES = re.compile(r"/{2,}")


class RouteError(ValueError):
    """A route entry is invalid. ``key`` names the entry and field, e.g. ``routes[2].mode``."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Route:
    """One configured route."""

    host: str
    """``*`` or a lower-case host name, optionally with ``:port``."""
    path_prefix: str
    """A normalized absolute path without a trailing ``/`` (except ``/`` itself); it matches
    whole segments."""
    policy: Policy
    name: str


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    """The policy chosen for one request and the name of the route that chose it."""

    policy: Policy
    name: str


class RouteTable:
    """The configured routes plus the default policy; immutable and safe to share."""

    def __init__(self, routes: Sequence[Route] = (), *, default: Policy | None = None) -> None:
        self.default = ResolvedRoute(default or Policy(), DEFAULT_ROUTE_NAME)
        # Longest prefix first; for equal prefixes an exact host before "*".
        self.routes = tuple(sorted(routes, key=lambda r: (-len(r.path_prefix), r.host == "*")))

    def resolve(self, target_uri: str) -> ResolvedRoute:
        """The route for an absolute http(s) ``target_uri`` (query and fragment ignored).

        A URI that cannot be parsed gets the default policy; the engine then denies it as
        ``request_invalid``.
        """
        if not self.routes:  # every target gets the default
            return self.default
        try:
            normalized = normalize_target_uri(target_uri)
        except InvalidUri:
            return self.default
        authority, _, path = normalized.partition("://")[2].partition("/")
        path = "/" + path
        candidates = [self._match(authority, path)]
        alternative = _separator_reading(path)
        if alternative != path:
            candidates.append(self._match(authority, alternative))
        return max(candidates, key=_strictness)

    def _match(self, authority: str, path: str) -> ResolvedRoute:
        host = _hostname(authority)
        for route in self.routes:
            if route.host != "*" and route.host not in (authority, host):
                continue
            if _segment_prefix(route.path_prefix, path):
                return ResolvedRoute(route.policy, route.name)
        return self.default


def parse_routes(entries: Sequence[Mapping[str, Any]], *, default: Policy) -> RouteTable:
    """Validate the config file's ``routes`` entries and build the table.

    ``nonce_required`` defaults to ``default.nonce_required``. Raises :class:`RouteError`
    naming the entry and key at fault.
    """
    routes: list[Route] = []
    seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(entries):
        where = f"routes[{i}]"
        for key in entry:
            if key not in ROUTE_KEYS:
                raise RouteError(f"{where}.{key}", f"unknown key (known: {', '.join(ROUTE_KEYS)})")
        host = _parse_host(f"{where}.host", entry.get("host", "*"))
        prefix = _parse_prefix(f"{where}.path_prefix", entry.get("path_prefix", "/"))
        mode = _parse_mode(f"{where}.mode", entry.get("mode", Mode.REQUIRE.value))
        nonce = entry.get("nonce_required", default.nonce_required)
        if not isinstance(nonce, bool):
            raise RouteError(f"{where}.nonce_required", "must be true or false")
        name = entry.get("name", f"{host}{prefix}")
        if not isinstance(name, str) or not name.strip():
            raise RouteError(f"{where}.name", "must be a non-empty string")
        if (host, prefix) in seen:
            raise RouteError(where, f"same host and path_prefix as routes[{seen[host, prefix]}]")
        seen[host, prefix] = i
        routes.append(Route(host, prefix, Policy(mode=mode, nonce_required=nonce), name.strip()))
    return RouteTable(routes, default=default)


def _parse_host(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RouteError(key, 'must be "*" or a host name')
    host = value.strip().lower()
    if host == "*":
        return host
    name, port = host, ""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        name, port = name + "]", rest.removeprefix(":")
    elif ":" in host:
        name, port = host.rsplit(":", 1)
    if not (_HOST.fullmatch(name) or _IPV6.fullmatch(name)):
        raise RouteError(key, f'{value!r} is not "*" or a host name (no other wildcards)')
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
        raise RouteError(key, f"{value!r} has an invalid port")
    return f"{name.rstrip('.')}:{int(port)}" if port else name.rstrip(".")


def _parse_prefix(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise RouteError(key, 'must be a path starting with "/"')
    if any(ch in value for ch in "?#") or not value.isascii() or " " in value:
        raise RouteError(key, "must be a plain ASCII path without query or fragment")
    try:
        normalized = normalize_target_uri("http://h" + value).removeprefix("http://h")
    except InvalidUri as exc:
        raise RouteError(key, f"invalid path: {exc}") from None
    return normalized.rstrip("/") or "/"


def _parse_mode(key: str, value: object) -> Mode:
    try:
        return Mode(str(value))
    except ValueError:
        modes = ", ".join(m.value for m in Mode)
        raise RouteError(key, f"must be one of {modes}") from None


def _hostname(authority: str) -> str:
    if authority.startswith("["):
        return authority.partition("]")[0] + "]"
    return authority.rpartition(":")[0] if ":" in authority else authority


def _segment_prefix(prefix: str, path: str) -> bool:
    """``prefix`` matches ``path`` on whole segments (``/a`` matches ``/a``, ``/a/b``)."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _separator_reading(path: str) -> str:
    """The path as a lenient server may read it: encoded and back slashes as ``/``, repeated
    slashes merged, dot segments removed."""
    decoded = _ENCODED_SEPARATOR.sub("/", path).replace("\\", "/")
    return remove_dot_segments(_SLASHES.sub("/", decoded)) or "/"


def _strictness(route: ResolvedRoute) -> tuple[int, bool]:
    return (_STRICTNESS[route.policy.mode], route.policy.nonce_required)
