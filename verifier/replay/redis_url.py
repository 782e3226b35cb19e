"""``DPOP_REPLAY_URL`` for Redis: which deployment (standalone, Sentinel, Cluster) and where.

Pure parsing, no I/O. The accepted forms (``rediss`` in place of ``redis`` means TLS to every
node, sentinels included)::

    redis://[user[:password]@]host[:6379][/db]
    redis+sentinel://[user[:password]@]host1[:26379][,host2[:26379]...]/master-name[/db]
    redis+cluster://[user[:password]@]host1[:6379][,host2[:6379]...]

User-info in the URL is the data nodes' ACL user and password (the ``DPOP_REDIS_USERNAME`` /
``DPOP_REDIS_PASSWORD`` settings override it). Query strings and fragments are refused: every
option is a setting of its own.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

DEFAULT_REDIS_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379

_SETTING = "DPOP_REPLAY_URL"
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<netloc>[^/?#]*)(?P<rest>.*)", re.S)
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*\.?")


class RedisMode(enum.StrEnum):
    """How the Redis deployment is reached."""

    STANDALONE = "standalone"
    """One server (or a proxy / managed endpoint that looks like one)."""
    SENTINEL = "sentinel"
    """Sentinels name the current master of ``service_name``; failover moves it."""
    CLUSTER = "cluster"
    """Redis Cluster: keys are spread over the masters by hash slot; the nodes are seeds."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RedisTarget:
    """A parsed Redis URL. ``password`` never appears in ``repr``."""

    mode: RedisMode
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    """Standalone: the server; Sentinel: the sentinels; Cluster: the seed nodes."""
    db: int = 0
    service_name: str = ""
    """Sentinel only: the monitored master's name."""
    username: str | None = None
    password: str | None = field(default=None)

    def __repr__(self) -> str:
        nodes = ",".join(f"{host}:{port}" for host, port in self.nodes)
        secret = ", password=<set>" if self.password else ""
        return (
            f"RedisTarget(mode={self.mode}, tls={self.tls}, nodes={nodes!r}, db={self.db}, "
            f"service_name={self.service_name!r}, username={self.username!r}{secret})"
        )


_SCHEMES = {
    "redis": (RedisMode.STANDALONE, False),
    "rediss": (RedisMode.STANDALONE, True),
    "redis+sentinel": (RedisMode.SENTINEL, False),
    "rediss+sentinel": (RedisMode.SENTINEL, True),
    "redis+cluster": (RedisMode.CLUSTER, False),
    "rediss+cluster": (RedisMode.CLUSTER, True),
}
REDIS_SCHEMES: tuple[str, ...] = tuple(_SCHEMES)
"""Every Redis scheme ``DPOP_REPLAY_URL`` accepts."""


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a Redis ``DPOP_REPLAY_URL``.

    Raises ValueError with a message that starts with ``DPOP_REPLAY_URL`` and never contains
    the password.
    """
    match = _URL.fullmatch(url.strip())
    if match is None:
        raise ValueError(f"{_SETTING}: not a URL of the form scheme://host...")
    scheme = match["scheme"].lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"{_SETTING}: unsupported Redis scheme {scheme!r}; "
            f"expected one of {', '.join(s + '://' for s in REDIS_SCHEMES)}"
        )
    mode, tls = _SCHEMES[scheme]
    rest = match["rest"]
    if "?" in rest or "#" in rest:
        raise ValueError(
            f"{_SETTING}: query options and fragments are not accepted; "
            "use the DPOP_REDIS_* settings (TLS files, credentials, timeouts)"
        )
    userinfo, _, hosts = match["netloc"].rpartition("@")
    username, password = _credentials(userinfo)
    default_port = DEFAULT_SENTINEL_PORT if mode is RedisMode.SENTINEL else DEFAULT_REDIS_PORT
    nodes = tuple(_node(part, default_port, i + 1) for i, part in enumerate(hosts.split(",")))
    path = [segment for segment in rest.split("/") if segment]

    service_name = ""
    if mode is RedisMode.SENTINEL:
        if not path:
            raise ValueError(f"{_SETTING}: redis+sentinel:// needs the master name: .../mymaster")
        service_name = unquote(path.pop(0))
    elif len(nodes) > 1 and mode is RedisMode.STANDALONE:
        raise ValueError(
            f"{_SETTING}: {scheme}:// takes one host; "
            "use redis+sentinel:// or redis+cluster:// for several"
        )
    if len(path) > 1:
        raise ValueError(f"{_SETTING}: unexpected path segments after the database number")
    db = _db(path[0]) if path else 0
    if mode is RedisMode.CLUSTER and db != 0:
        raise ValueError(f"{_SETTING}: Redis Cluster has only database 0")
    return RedisTarget(mode=mode, tls=tls, nodes=nodes, db=db, service_name=service_name,
                       username=username, password=password)  # fmt: skip


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, has_password, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if has_password and password else None)


# Errors never echo parts of the URL: a password with an unescaped "/" or "@" would end up in
# the host or path and then in the message.


def _node(text: str, default_port: int, position: int) -> tuple[str, int]:
    where = f"{_SETTING}: host #{position}"
    if not text:
        raise ValueError(f"{where} is empty (check the commas in the host list)")
    if text.startswith("["):
        host, bracket, port_text = text[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise ValueError(f"{where}: malformed [IPv6] host")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{where}: not an IPv6 address") from None
        port_text = port_text[1:]
    else:
        host, _, port_text = text.partition(":")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(
                f"{where}: not a host name or IPv4 address "
                "(percent-encode any / @ : in the password)"
            )
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{where}: the port must be 1-65535")
    return host, int(port_text)


def _db(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"{_SETTING}: the database must be a number 0-65535")
    return int(text)
