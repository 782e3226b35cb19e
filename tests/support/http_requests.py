"""A client's HTTP requests through a real proxy (Envoy, NGINX, Caddy), and what it got back,
with the decision the service logged for each: shared by the Envoy and gateway end-to-end tests.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.support.service import ServiceProcess
from verifier.cli.mint import KeyPair, make_proof

HOST = "api.test"
"""The host clients name (``Host``) and sign (``htu``)."""


@dataclass
class Reply:
    """What a client got back."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    trace_id: str
    """Sent in ``traceparent``; the service logs it with the decision."""

    def header(self, name: str) -> str:
        """The one value of header ``name`` ("" when absent); fails when sent twice."""
        values = [v for k, v in self.headers if k.lower() == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else ""

    def json(self) -> Any:
        return json.loads(self.body)

    def upstream_headers(self) -> list[tuple[str, str]]:
        """The headers the upstream received (the echo upstream's body)."""
        return [(k, v) for k, v in self.json()["headers"]]


def send(
    address: tuple[str, int],
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    method: str = "GET",
    host: str | None = HOST,
    body: bytes | None = None,
) -> Reply:
    """One HTTP/1.1 request; repeated header names are sent as separate lines, ``path`` as
    given (no encoding). A fresh W3C ``traceparent`` marks the request, so that its decision
    line can be found."""
    trace_id = secrets.token_hex(16)
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("host", host)
        connection.putheader("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read(), trace_id)
    finally:
        connection.close()


def dpop_headers(
    client: KeyPair, token: str, method: str, path: str, *, nonce: str | None = None
) -> list[tuple[str, str]]:
    """``Authorization: DPoP`` and a fresh proof for ``method http://api.test{path}``."""
    proof = make_proof(client, method, f"http://{HOST}{path}", access_token=token, nonce=nonce)
    return [("authorization", f"DPoP {token}"), ("dpop", proof)]


def logged_decision(trace_id: str, rpc: str, *services: ServiceProcess) -> dict[str, Any]:
    """The decision one of ``services`` logged for the request marked ``trace_id``, which must
    have come in through ``rpc`` (stderr is read by a thread, so it is waited for)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for service in services:
            for line in list(service.stderr_lines):
                if line.startswith("{") and '"event":"decision"' in line:
                    entry: dict[str, Any] = json.loads(line)
                    if entry.get("trace_id") == trace_id:
                        assert entry["rpc"] == rpc, entry
                        return entry
        time.sleep(0.02)
    raise AssertionError("no decision was logged for the request")


def assert_denied(reply: Reply, status: int, error: str) -> None:
    """A denial as the verifier words it: status, challenge, no-store and the JSON body."""
    assert reply.status == status, reply
    challenge = reply.header("www-authenticate")
    assert challenge.startswith(f'DPoP error="{error}"'), challenge
    assert reply.header("cache-control") == "no-store"
    assert reply.header("content-type") == "application/json"
    body = reply.json()
    assert body["error"] == error and set(body) == {"error", "error_description"}
    assert f'error_description="{body["error_description"]}"' in challenge
