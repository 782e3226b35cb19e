"""Per-route enforcement policy: which :class:`Policy` applies to a request's host and path.

Routes come from the config file (``routes = [{host, path_prefix, mode, nonce_required}]``) and
are resolved the same way for every front door, from the request's target URI, normalized as
for ``htu`` (:func:`verifier.domain.uri.split_target_uri`):

* ``host`` is ``*`` (any host) or one host name, compared in the form of
  :func:`~verifier.domain.uri.canonical_host` for the request exactly as for the route (lower
  case, one trailing dot removed). A route host with a port matches that port only, spelled or
  implied by the scheme (``api.example.com:443`` matches ``https://api.example.com/``).
* ``path_prefix`` matches whole path segments: ``/api`` matches ``/api`` and ``/api/orders``,
  never ``/apiv2``. The longest matching prefix wins; between equally long prefixes, an exact
  host wins over ``*`` (and a host with a port over one without). With no match, the default
  applies: ``require`` with the global nonce setting.
* Servers read paths more leniently than RFC 3986 does: they strip ``;`` path parameters,
  decode ``%2F``, merge ``//``, fold case. Every combination of these steps (a
  :class:`Reading`) reads the request path and every route prefix alike; each reading selects
  a route as above, and the strictest of them (:func:`strictness`) applies. So no spelling of
  a path selects a weaker route than the one the upstream serves it as. A path that decodes to
  a control character (``%00``) or to no UTF-8 text has no reliable reading: it gets the
  strictest route its host could select.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from verifier.domain.model import Mode, Policy, Profile, SenderConstraint
from verifier.domain.uri import (
    InvalidUri,
    canonical_host,
    normalize_target_uri,
    remove_dot_segments,
    split_canonical_authority,
    split_target_uri,
)

ROUTE_KEYS = (
    "host",
    "path_prefix",
    "mode",
    "nonce_required",
    "name",
    "sender_constraint",
    "profile",
    "issuers",
)
MAX_ROUTE_ISSUERS = 64
"""Most entries in a route's ``issuers`` allow-list."""
DEFAULT_ROUTE_NAME = "default"

# Weakest first: a stricter mode has a higher rank.
_MODE_RANK = {Mode.OFF: 0, Mode.REPORT_ONLY: 1, Mode.ALLOW_BEARER: 2, Mode.REQUIRE: 3}
# ``dpop`` and ``mtls`` are equally strict (neither accepts what the other does).
_CONSTRAINT_RANK = {
    SenderConstraint.NONE: 0,
    SenderConstraint.EITHER: 1,
    SenderConstraint.DPOP: 2,
    SenderConstraint.MTLS: 2,
}
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]")
_PARAMS = re.compile(r";[^/]*")
_SLASHES = re.compile(r"/{2,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A path still percent-encoded after this many decodings has no reliable reading.
_MAX_DECODINGS = 3
# A path with none of these reads the same in every Reading.
_READ_DIFFERENTLY = re.compile(r"[;%A-Z]|//")


def strictness(policy: Policy) -> tuple[int, bool, int, bool, bool]:
    """How strict ``policy`` is, for ordering: by mode first (``require`` > ``allow-bearer`` >
    ``report-only`` > ``off``), then the ``fapi2`` profile over none, then the sender
    constraint (``dpop`` = ``mtls`` > ``either`` > ``none``), then a required nonce over none,
    then an issuer allow-list over none."""
    return (
        _MODE_RANK[policy.mode],
        policy.profile is Profile.FAPI2,
        _CONSTRAINT_RANK[policy.sender_constraint],
        policy.nonce_required,
        bool(policy.issuers),
    )


@dataclass(frozen=True, slots=True)
class Reading:
    """One way a server may read a request path: each lenient step on or off."""

    params: bool = False
    """``;...`` path parameters removed from every segment (servlet containers)."""
    decode: bool = False
    """Every percent-encoding decoded, up to three times; ``%2F`` and ``%5C`` separate."""
    merge: bool = False
    """Repeated slashes read as one."""
    fold: bool = False
    """Case-insensitive (Windows and macOS file systems, some routers)."""


READINGS = tuple(Reading(*steps) for steps in itertools.product((False, True), repeat=4))
"""Every reading; the first one is the path as normalized for ``htu``, nothing more."""


def read_path(path: str, reading: Reading) -> str | None:
    """``path`` (as :func:`~verifier.domain.uri.normalize_target_uri` leaves it) the way
    ``reading`` reads it, dot segments removed last (RFC 3986 §5.2.4); None when its decoding
    has no reliable reading (a control character, not UTF-8, or still encoded)."""
    if reading.params and ";" in path:
        path = _PARAMS.sub("", path)
    if reading.decode and "%" in path:
        decoded = _decode(path)
        if decoded is None:
            return None
        path = decoded.replace("\\", "/")
        if reading.params and ";" in path:  # an encoded ";" starts a parameter once decoded
            path = _PARAMS.sub("", path)
    if reading.merge and "//" in path:
        path = _SLASHES.sub("/", path)
    if reading.fold:
        path = _fold(path)
    return (remove_dot_segments(path) if "." in path else path) or "/"


@functools.lru_cache(maxsize=256)  # the readings of one path decode at most two strings
def _decode(path: str) -> str | None:
    raw = path.encode("utf-8")
    for _ in range(_MAX_DECODINGS + 1):
        decoded = unquote_to_bytes(raw)
        if decoded == raw:
            break
        raw = decoded
    else:  # still encoded after _MAX_DECODINGS decodings
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def _fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    # Case-insensitive servers compare characters by their simple case mappings: "\u0131"
    # (dotless i) and "\u017f" (long s) upper-case to "I" and "S", "\u0130" lower-cases to "i".
    return text.replace("\u0130", "i").upper().lower()


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
    """``*`` or a :func:`~verifier.domain.uri.canonical_host`, optionally with ``:port``."""
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


@dataclass(frozen=True, slots=True)
class _Entry:
    """A route as one :class:`Reading` sees it."""

    prefix: str
    host: str
    """``*`` or a :func:`~verifier.domain.uri.canonical_host`."""
    port: int | None
    route: Route


class RouteTable:
    """The configured routes plus the default policy; immutable and safe to share."""

    def __init__(self, routes: Sequence[Route] = (), *, default: Policy | None = None) -> None:
        self.default = ResolvedRoute(default or Policy(), DEFAULT_ROUTE_NAME)
        # Longest prefix first; for equal prefixes an exact host before "*".
        self.routes = tuple(sorted(routes, key=lambda r: (-len(r.path_prefix), r.host == "*")))
        # Each reading's view of the routes; readings that see the same table share it.
        tables: dict[tuple[_Entry, ...], int] = {}
        self._readings = tuple(
            (reading, tables.setdefault(_table(self.routes, reading), len(tables)))
            for reading in READINGS
        )
        self._tables = tuple(tables)
        self._strictest = max(
            strictness(policy) for policy in (self.default.policy, *(r.policy for r in routes))
        )

    def resolve(self, target_uri: str) -> ResolvedRoute:
        """The route for an absolute http(s) ``target_uri`` (query and fragment ignored): the
        strictest of the routes that the readings of its path select; between equally strict
        ones, the route of the earlier reading in :data:`READINGS`.

        A URI that cannot be parsed gets the default policy; the engine then denies it as
        ``request_invalid``.
        """
        if not self.routes:  # every target gets the default
            return self.default
        try:
            target = split_target_uri(target_uri)
        except InvalidUri:
            return self.default
        host, port = canonical_host(target.host), target.port
        best: ResolvedRoute | None = None
        for table, path in self._views(target.path):
            if path is None:
                chosen = self._strictest_for(host, port)
            else:
                chosen = self._match(self._tables[table], host, port, path)
            if best is None or strictness(chosen.policy) > strictness(best.policy):
                best = chosen
                if strictness(best.policy) == self._strictest:  # no reading can beat it
                    break
        assert best is not None  # there is at least one view
        return best

    def _views(self, path: str) -> Iterator[tuple[int, str | None]]:
        """Each distinct (table, reading of ``path``), in the order of :data:`READINGS`."""
        if not _READ_DIFFERENTLY.search(path):  # every reading reads it as it is
            for table in range(len(self._tables)):
                yield table, path
            return
        seen: set[tuple[int, str | None]] = set()
        for reading, table in self._readings:
            view = (table, read_path(path, reading))
            if view not in seen:
                seen.add(view)
                yield view

    def _match(self, table: tuple[_Entry, ...], host: str, port: int, path: str) -> ResolvedRoute:
        for entry in table:
            if _host_matches(entry, host, port) and _segment_prefix(entry.prefix, path):
                return ResolvedRoute(entry.route.policy, entry.route.name)
        return self.default

    def _strictest_for(self, host: str, port: int) -> ResolvedRoute:
        """The strictest route the host could select, whatever its path."""
        entries = [entry for entry in self._tables[0] if _host_matches(entry, host, port)]
        candidates = [ResolvedRoute(entry.route.policy, entry.route.name) for entry in entries]
        if not any(entry.prefix == "/" for entry in entries):  # some paths get the default
            candidates.append(self.default)
        return max(candidates, key=lambda resolved: strictness(resolved.policy))


def _table(routes: Sequence[Route], reading: Reading) -> tuple[_Entry, ...]:
    """The routes as ``reading`` sees them: longest prefix first, then an exact host before
    ``*`` and a host with a port before one without, then the stricter policy (two prefixes
    may read the same: ``/A`` and ``/a``)."""
    entries = []
    for route in routes:
        prefix = read_path(route.path_prefix, reading)
        if prefix is None:
            raise ValueError(f"route {route.name!r}: path_prefix has no reliable reading")
        host, port = _route_host(route.host)
        entries.append(_Entry(prefix.rstrip("/") or "/", host, port, route))
    entries.sort(key=lambda e: strictness(e.route.policy), reverse=True)
    entries.sort(key=lambda e: (-len(e.prefix), e.host == "*", e.port is None))  # stable
    return tuple(entries)


def _route_host(host: str) -> tuple[str, int | None]:
    return (host, None) if host == "*" else split_canonical_authority(host)


def _host_matches(entry: _Entry, host: str, port: int) -> bool:
    if entry.host == "*":
        return True
    return entry.host == host and (entry.port is None or entry.port == port)


def parse_routes(entries: Sequence[Mapping[str, Any]], *, default: Policy) -> RouteTable:
    """Validate the config file's ``routes`` entries and build the table.

    ``nonce_required`` defaults to ``default.nonce_required``; ``sender_constraint`` to
    ``dpop``; ``profile`` to none (``"fapi2"``: the FAPI 2.0 resource-server rules);
    ``issuers`` (the issuer identifiers the route accepts) to every trusted issuer. Raises
    :class:`RouteError` naming the entry and key at fault.
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
        policy = Policy(
            mode=mode,
            nonce_required=nonce,
            sender_constraint=_parse_constraint(
                f"{where}.sender_constraint", entry.get("sender_constraint", "dpop")
            ),
            profile=_parse_profile(f"{where}.profile", entry.get("profile", "")),
            issuers=_parse_issuers(f"{where}.issuers", entry.get("issuers", [])),
        )
        routes.append(Route(host, prefix, policy, name.strip()))
    return RouteTable(routes, default=default)


def _parse_host(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RouteError(key, 'must be "*" or a host name')
    if value.strip() == "*":
        return "*"
    try:
        name, port = split_canonical_authority(value.strip())  # as the request's host
    except InvalidUri:
        name, port = "", None
    if not (_HOST.fullmatch(name) or _IPV6.fullmatch(name)):
        raise RouteError(key, f'{value!r} is not "*" or a host name (no other wildcards)')
    if port is not None and not 0 < port <= 65535:
        raise RouteError(key, f"{value!r} has an invalid port")
    return name if port is None else f"{name}:{port}"


def _parse_prefix(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise RouteError(key, 'must be a path starting with "/"')
    if any(ch in value for ch in "?#") or not value.isascii() or " " in value:
        raise RouteError(key, "must be a plain ASCII path without query or fragment")
    try:
        normalized = normalize_target_uri("http://h" + value).removeprefix("http://h")
    except InvalidUri as exc:
        raise RouteError(key, f"invalid path: {exc}") from None
    prefix = normalized.rstrip("/") or "/"
    if any(read_path(prefix, reading) is None for reading in READINGS):
        raise RouteError(key, "must decode to UTF-8 text without control characters")
    return prefix


def _parse_mode(key: str, value: object) -> Mode:
    try:
        return Mode(str(value))
    except ValueError:
        modes = ", ".join(m.value for m in Mode)
        raise RouteError(key, f"must be one of {modes}") from None


def _parse_constraint(key: str, value: object) -> SenderConstraint:
    try:
        return SenderConstraint(value) if isinstance(value, str) else SenderConstraint("?")
    except ValueError:
        names = ", ".join(c.value for c in SenderConstraint)
        raise RouteError(key, f"must be one of {names}") from None


def _parse_profile(key: str, value: object) -> Profile:
    if not isinstance(value, str) or value not in {p.value for p in Profile}:
        raise RouteError(key, 'must be "fapi2" or "" (no profile)')
    return Profile(value)


def _parse_issuers(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise RouteError(key, "must be a list of issuer identifiers")
    if len(value) > MAX_ROUTE_ISSUERS:
        raise RouteError(key, f"more than {MAX_ROUTE_ISSUERS} issuers")
    issuers: list[str] = []
    for i, issuer in enumerate(value):
        if not isinstance(issuer, str) or not issuer.strip() or issuer != issuer.strip():
            raise RouteError(f"{key}[{i}]", "must be a non-empty issuer identifier (no spaces)")
        if issuer in issuers:
            raise RouteError(f"{key}[{i}]", f"{issuer!r} listed twice")
        issuers.append(issuer)
    return tuple(issuers)


def _segment_prefix(prefix: str, path: str) -> bool:
    """``prefix`` matches ``path`` on whole segments (``/a`` matches ``/a``, ``/a/b``)."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")
