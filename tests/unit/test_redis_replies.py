"""The pure readers of Sentinel and Cluster replies used by the blocking Redis pools: which
master a ``SENTINEL MASTER`` reply allows, the slot map of ``CLUSTER SLOTS``, the node of a
``MOVED``/``ASK`` error. Anything malformed is refused (None or a connection error), never
guessed at."""

from __future__ import annotations

import pytest

from verifier.replay.redis_blocking import (
    CLUSTER_SLOTS,
    _redirect_target,
    _slot_map,
    _usable_master,
)
from verifier.replay.resp_protocol import RespConnectionError


def _master(flags: bytes, ip: bytes = b"10.0.0.5", port: bytes = b"6380") -> list[object]:
    return [b"name", b"mymaster", b"ip", ip, b"port", port, b"flags", flags, b"num-slaves", b"2"]


def test_a_healthy_master_is_used() -> None:
    assert _usable_master(_master(b"master")) == ("10.0.0.5", 6380)


@pytest.mark.parametrize(
    "reply",
    [
        _master(b"master,s_down"),
        _master(b"master,o_down"),
        _master(b"master,s_down,o_down"),
        _master(b"slave"),
        _master(b"master", port=b"not-a-port"),
        _master(b"master")[:-1],  # odd length
        [b"ip", b"10.0.0.5", b"port", b"6380"],  # no flags
        b"master",
        None,
        [b"ip", 7, b"port", b"6380", b"flags", b"master"],
    ],
)
def test_a_down_unknown_or_malformed_master_is_not_used(reply: object) -> None:
    assert _usable_master(reply) is None  # type: ignore[arg-type]


def test_a_slot_map_covers_the_ranges_it_names() -> None:
    reply = [
        [0, 5460, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
        [5461, 10922, [b"", 7001, b"id2"]],  # empty address: the node asked
        [10923, 16383, [b"10.0.0.3", 7002, b"id3"]],
    ]
    owners = _slot_map(reply, "seed.example")
    assert owners is not None and len(owners) == CLUSTER_SLOTS
    assert owners[0] == owners[5460] == ("10.0.0.1", 7000)
    assert owners[5461] == ("seed.example", 7001)
    assert owners[16383] == ("10.0.0.3", 7002)
    partial = _slot_map([[0, 99, [b"10.0.0.1", 7000]]], "seed")
    assert partial is not None and partial[100] is None  # an uncovered slot has no master


@pytest.mark.parametrize(
    "reply",
    [
        b"nope",
        [[0, 16384, [b"10.0.0.1", 7000]]],  # past the last slot
        [[10, 5, [b"10.0.0.1", 7000]]],  # reversed range
        [[0, 10]],  # no master
        [[0, 10, [b"10.0.0.1"]]],  # no port
        [[0, 10, [b"10.0.0.1", b"7000"]]],  # port not an integer
    ],
)
def test_a_malformed_slot_map_is_refused(reply: object) -> None:
    assert _slot_map(reply, "seed") is None  # type: ignore[arg-type]


def test_redirect_targets() -> None:
    assert _redirect_target("MOVED 3999 127.0.0.1:6381") == ("127.0.0.1", 6381)
    assert _redirect_target("ASK 12 ::1:6379") == ("::1", 6379)
    for bad in ("MOVED 3999", "ASK 1 host:port", "MOVED 1 2 3"):
        with pytest.raises(RespConnectionError):
            _redirect_target(bad)
