"""parse_redis_url: every deployment form of DPOP_REPLAY_URL, and errors that hide passwords."""

from __future__ import annotations

import pytest

from verifier.replay.redis_url import RedisMode, parse_redis_url

VALID = [
    ("redis://cache", RedisMode.STANDALONE, False, (("cache", 6379),), 0, ""),
    ("redis://127.0.0.1:7000/3", RedisMode.STANDALONE, False, (("127.0.0.1", 7000),), 3, ""),
    ("rediss://cache.internal:6380/0", RedisMode.STANDALONE, True,
     (("cache.internal", 6380),), 0, ""),
    ("REDIS://[::1]:7000", RedisMode.STANDALONE, False, (("::1", 7000),), 0, ""),
    ("redis+sentinel://s1,s2:26380,s3/mymaster", RedisMode.SENTINEL, False,
     (("s1", 26379), ("s2", 26380), ("s3", 26379)), 0, "mymaster"),
    ("rediss+sentinel://s1:26379/cache-main/2", RedisMode.SENTINEL, True,
     (("s1", 26379),), 2, "cache-main"),
    ("redis+cluster://n1:7000,n2:7001,n3:7002", RedisMode.CLUSTER, False,
     (("n1", 7000), ("n2", 7001), ("n3", 7002)), 0, ""),
    ("rediss+cluster://n1/0", RedisMode.CLUSTER, True, (("n1", 6379),), 0, ""),
]  # fmt: skip


@pytest.mark.parametrize(("url", "mode", "tls", "nodes", "db", "service"), VALID)
def test_valid_urls(
    url: str,
    mode: RedisMode,
    tls: bool,
    nodes: tuple[tuple[str, int], ...],
    db: int,
    service: str,
) -> None:
    target = parse_redis_url(url)
    assert (target.mode, target.tls, target.nodes, target.db) == (mode, tls, nodes, db)
    assert target.service_name == service
    assert target.username is None and target.password is None


def test_credentials_are_percent_decoded_and_hidden_from_repr() -> None:
    target = parse_redis_url("redis+sentinel://dpop:p%40ss%2Fw0rd@s1,s2/mymaster")
    assert (target.username, target.password) == ("dpop", "p@ss/w0rd")
    assert target.nodes == (("s1", 26379), ("s2", 26379))
    assert "w0rd" not in repr(target) and "password=<set>" in repr(target)
    assert parse_redis_url("redis://:only-password@h").username is None
    assert parse_redis_url("redis://:only-password@h").password == "only-password"


INVALID = [
    "http://cache:6379",
    "redis://",
    "redis://a,b",
    "redis://cache:0",
    "redis://cache:65536",
    "redis://cache:port",
    "redis://cache/db",
    "redis://cache/1/2",
    "redis://cache?ssl_cert_reqs=none",
    "redis://cache#frag",
    "redis://[::1",
    "redis://[not-v6]:1",
    "redis://bad_host!",
    "redis+sentinel://s1,s2",
    "redis+sentinel://s1,,s2/m",
    "redis+cluster://n1/1",
    "cache:6379",
]


@pytest.mark.parametrize("url", INVALID)
def test_invalid_urls_name_the_setting(url: str) -> None:
    with pytest.raises(ValueError, match=r"^DPOP_REPLAY_URL: "):
        parse_redis_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:se/cr3t@cache:6379/0",  # an unescaped "/" moves the password into the path
        "redis://user:se:cr3t@cache:6379",
        "redis://user:se#cr3t@cache",
        "redis://user:se?cr3t@cache",
        "redis+cluster://user:se,cr3t@n1,n2",
    ],
)
def test_errors_never_contain_the_password(url: str) -> None:
    try:
        parse_redis_url(url)
    except ValueError as exc:
        assert "cr3t" not in str(exc)
