"""The RESP2 codec of the lean client: commands encoded byte-exact, every reply type decoded,
incomplete input waited for, garbage refused."""

from __future__ import annotations

import pytest

from verifier.replay.resp_protocol import (
    RespConnectionError,
    RespEndpoint,
    RespError,
    encode_command,
    encode_get,
    encode_set_nx_px,
    parse_reply,
)


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode_command(b"WAIT", b"1", b"50") == b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$2\r\n50\r\n"
    assert encode_get(b"k:1") == encode_command(b"GET", b"k:1")
    assert encode_set_nx_px(b"k", b"\r\n\x00v", 66000) == encode_command(
        b"SET", b"k", b"\r\n\x00v", b"NX", b"PX", b"66000"
    )


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"+OK\r\n", b"OK"),
        (b"$-1\r\n", None),
        (b"$0\r\n\r\n", b""),
        (b"$4\r\n\r\n\x00x\r\n", b"\r\n\x00x"),
        (b":2\r\n", 2),
        (b":-1\r\n", -1),
        (b"*-1\r\n", None),
        (b"*2\r\n+OK\r\n$1\r\nx\r\n", [b"OK", b"x"]),
    ],
)
def test_replies_are_decoded_whole_and_waited_for_when_cut(wire: bytes, value: object) -> None:
    assert parse_reply(wire, 0) == (value, len(wire))
    assert parse_reply(b"junk" + wire, 4) == (value, 4 + len(wire))
    for cut in range(len(wire)):
        assert parse_reply(wire[:cut], 0) is None


def test_an_error_reply_is_a_value_with_its_code() -> None:
    parsed = parse_reply(b"-NOPERM this user has no permissions to run the 'set' command\r\n", 0)
    assert parsed is not None
    error, _ = parsed
    assert isinstance(error, RespError)
    assert error.code == "NOPERM"


@pytest.mark.parametrize("wire", [b"?x\r\n", b"$x\r\n", b":1.5\r\n", b"HTTP/1.1 400\r\n"])
def test_anything_else_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(RespConnectionError):
        parse_reply(wire, 0)


def test_handshake_authenticates_and_selects() -> None:
    assert RespEndpoint(host="h", port=1).handshake() == (b"", 0)
    payload, count = RespEndpoint(host="h", port=1, username="u", password="p", db=2).handshake()
    assert count == 2
    assert payload == encode_command(b"AUTH", b"u", b"p") + encode_command(b"SELECT", b"2")
    assert RespEndpoint(host="h", port=1, password="p").handshake() == (
        encode_command(b"AUTH", b"p"),
        1,
    )


def test_endpoint_repr_has_no_password() -> None:
    assert "s3cret" not in repr(RespEndpoint(host="h", port=1, password="s3cret"))
