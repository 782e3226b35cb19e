"""The forward-auth HTTP listener of a real service process, over real sockets: decisions, who
may ask, and what one caller can hold (connections, bytes, time to send a request).

The gateways themselves (NGINX, Caddy, Traefik's headers) are tested in ``tests/gateways``.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.service import ServiceProcess, TestIssuer, running_service
from verifier.cli.mint import generate_key, make_proof

TRUSTED = "127.0.0.2"
"""The gateway's address: the only trusted proxy. Requests from 127.0.0.1 are not trusted."""
RECEIVE_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[ServiceProcess]:
    env = {
        "DPOP_HTTP_LISTEN": "127.0.0.1:0",
        "DPOP_HTTP_TRUSTED_PROXIES": f"{TRUSTED}/32",
        "DPOP_RECEIVE_TIMEOUT_MS": str(int(RECEIVE_TIMEOUT_S * 1000)),
        "DPOP_HTTP_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT_S),
        "DPOP_HTTP_MAX_HEADER_FIELDS": "40",
    }
    with running_service(tmp_path_factory.mktemp("svc"), issuer, env=env) as svc:
        assert svc.http_address
        yield svc


def port_of(service: ServiceProcess) -> int:
    return int(service.http_address.rsplit(":", 1)[1])


def connect(service: ServiceProcess, source: str = TRUSTED) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port_of(service)), timeout=10, source_address=(source, 0)
    )
    return sock


def ask(
    service: ServiceProcess, headers: dict[str, str], *, source: str = TRUSTED
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port_of(service), timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("GET", "/verify", headers=headers)
        response = connection.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


def valid_headers(issuer: TestIssuer, path: str = "/orders") -> dict[str, str]:
    client = generate_key("ES256")
    token = issuer.token(client)
    proof = make_proof(client, "GET", f"https://api.test{path}", access_token=token)
    return {
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.test",
        "X-Forwarded-Uri": path,
        "Authorization": f"DPoP {token}",
        "DPoP": proof,
    }


def raw_reply(sock: socket.socket, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes or a whole answer has arrived."""
    sock.sendall(request)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and b"content-length:" in head.lower():
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                return data


def test_a_valid_request_is_allowed_and_its_replay_denied(
    service: ServiceProcess, issuer: TestIssuer
) -> None:
    headers = valid_headers(issuer)
    status, answer, body = ask(service, headers)
    assert (status, body) == (200, b"")
    assert answer["x-dpop-jkt"] and answer["cache-control"] == "no-store"
    status, answer, body = ask(service, headers)
    assert status == 401
    assert answer["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')
    assert json.loads(body)["error"] == "invalid_dpop_proof"


def test_an_untrusted_caller_gets_403_and_no_decision(
    service: ServiceProcess, issuer: TestIssuer
) -> None:
    status, answer, body = ask(service, valid_headers(issuer), source="127.0.0.1")
    assert status == 403
    assert json.loads(body)["error"] == "untrusted_proxy"
    assert "x-dpop-jkt" not in answer


def test_no_forwarded_method_or_uri_is_400_request_invalid(service: ServiceProcess) -> None:
    status, answer, body = ask(service, {"Host": "api.test"})
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"
    assert "www-authenticate" not in answer


def test_too_many_header_fields_is_431(service: ServiceProcess, issuer: TestIssuer) -> None:
    headers = valid_headers(issuer) | {f"X-Filler-{i}": "x" for i in range(40)}
    status, _, body = ask(service, headers)
    assert status == 431
    assert json.loads(body)["error"] == "invalid_request"


def test_a_request_head_beyond_the_limit_is_431(service: ServiceProcess) -> None:
    with connect(service) as sock:
        head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
        # HTTP/1.0 in the status line: the request line was never fully accepted.
        assert raw_reply(sock, head).split(b" ", 2)[1] == b"431"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        # RFC 9112 §6.1: a transfer coding the server does not understand is a 501.
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
    ],
)
def test_malformed_http_gets_a_precise_status_never_a_500_or_a_trace(
    service: ServiceProcess, request_bytes: bytes, expected: int
) -> None:
    with connect(service) as sock:
        reply = raw_reply(sock, request_bytes)
    assert int(reply.split(b" ", 2)[1]) == expected, reply
    assert b"Traceback" not in reply


def test_a_body_beyond_the_limit_is_413(service: ServiceProcess) -> None:
    with connect(service) as sock:
        head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"
        assert raw_reply(sock, head + b"a" * 100_000).startswith(b"HTTP/1.1 413 ")


def test_a_request_sent_too_slowly_is_cut_off(service: ServiceProcess) -> None:
    with connect(service) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        started = time.monotonic()
        sock.settimeout(30)  # a hang guard, far beyond the deadline
        while time.monotonic() - started < 30:
            sock.sendall(b"X-Drip: 1\r\n")  # a byte now and then keeps it from being idle
            try:
                sock.settimeout(0.2)
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                break
        else:
            pytest.fail("a request still being sent after 30 s was never cut off")
        assert time.monotonic() - started >= RECEIVE_TIMEOUT_S


def test_an_idle_connection_is_closed(service: ServiceProcess) -> None:
    with connect(service) as sock:
        sock.settimeout(30)  # a hang guard
        assert sock.recv(1) == b""  # closed by the server after DPOP_HTTP_IDLE_TIMEOUT_SECONDS


def test_a_thousand_idle_and_half_sent_connections_do_not_stop_valid_requests(
    service: ServiceProcess, issuer: TestIssuer
) -> None:
    held: list[socket.socket] = []
    try:
        for i in range(1000):
            sock = connect(service, source="127.0.0.1" if i % 2 else TRUSTED)
            if i % 2:  # half of them send half a request
                sock.sendall(b"GET /verify HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-")
            held.append(sock)
        for _ in range(5):
            status, answer, _ = ask(service, valid_headers(issuer))
            assert status == 200 and answer["x-dpop-jkt"]
    finally:
        for sock in held:
            sock.close()
    # Afterwards the listener is as it was.
    assert ask(service, valid_headers(issuer))[0] == 200


def test_sigterm_with_open_connections_stops_cleanly(tmp_path: Path, issuer: TestIssuer) -> None:
    env = {"DPOP_HTTP_LISTEN": "127.0.0.1:0", "DPOP_SHUTDOWN_GRACE_SECONDS": "2"}
    with running_service(tmp_path, issuer, env=env) as svc:
        port = int(svc.http_address.rsplit(":", 1)[1])
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        half = socket.create_connection(("127.0.0.1", port), timeout=10)
        half.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        status, _, _ = ask_from(port, valid_headers(issuer))
        assert status == 200
        svc.process.send_signal(signal.SIGTERM)
        assert svc.process.wait(timeout=30) == 0  # a hang guard, far beyond the grace period
        idle.close()
        half.close()
    log = "".join(svc.stderr_lines)
    assert "stopped" in log and "Traceback" not in log


def ask_from(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
