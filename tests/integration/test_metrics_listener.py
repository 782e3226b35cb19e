"""The Prometheus endpoint (``DPOP_METRICS_LISTEN``) bounds what one caller can hold, like every
other listener: connections that send nothing, or half a request, hold a connection slot and
never a thread, and are closed once the receive deadline passes; scrapes go on meanwhile."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from tests.support.net import free_port
from tests.support.service import ServiceProcess, TestIssuer, running_service

RECEIVE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, int]]:
    issuer = TestIssuer(tmp_path_factory.mktemp("issuer"))
    port = free_port()
    env = {
        "DPOP_METRICS_LISTEN": f"127.0.0.1:{port}",
        "DPOP_RECEIVE_TIMEOUT_MS": str(int(RECEIVE_TIMEOUT_S * 1000)),
    }
    with running_service(tmp_path_factory.mktemp("svc"), issuer, env=env) as service:
        yield service, port


def scrape(port: int) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_scrape_answers_the_service_metrics(metrics: tuple[ServiceProcess, int]) -> None:
    status, body = scrape(metrics[1])
    assert status == 200
    assert "process_cpu_seconds_total" in body


def test_many_silent_and_half_sent_connections_do_not_stop_scrapes(
    metrics: tuple[ServiceProcess, int],
) -> None:
    port = metrics[1]
    held: list[socket.socket] = []
    try:
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i % 2:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")
            held.append(sock)
        for _ in range(3):
            assert scrape(port)[0] == 200
    finally:
        for sock in held:
            sock.close()


def test_a_request_not_sent_in_time_is_cut_off(metrics: tuple[ServiceProcess, int]) -> None:
    with socket.create_connection(("127.0.0.1", metrics[1]), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")  # and never the blank line
        sock.settimeout(30)  # a hang guard, far beyond the receive deadline
        assert sock.recv(1) == b""
