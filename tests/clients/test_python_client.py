"""The Python client library (clients/python) against the real ``dpop-verifier serve`` process:
sync and asyncio calls, requests built from a live WSGI server and from ASGI scopes, TLS with
client certificates, deadlines, and retries that happen for transport failures only."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
import pytest
from dpop_verifier_client import (
    NO_RETRY,
    TLS,
    AsyncVerifierClient,
    ProofSigner,
    Reason,
    RetryPolicy,
    VerifierClient,
    VerifierError,
    build_request,
    is_allowed,
    request_from_asgi,
    request_from_wsgi,
    response_headers,
)

from tests.support.net import free_port
from tests.support.pki import make_pki
from tests.support.service import ServiceProcess, TestIssuer, running_service

URL = "https://api.test/orders"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def signer() -> ProofSigner:
    return ProofSigner.generate("ES256")


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[VerifierClient]:
    with VerifierClient(service.address, insecure=True) as client:
        yield client


def retries_logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum("retrying" in r.getMessage() for r in caplog.records if r.name.startswith("dpop_"))


# --- sync and asyncio ----------------------------------------------------------------------------


def test_sync_client_allows_a_valid_request_and_denies_its_replay_without_retrying(
    client: VerifierClient,
    issuer: TestIssuer,
    signer: ProofSigner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dpop_verifier_client")
    token = issuer.token(signer.key, subject="alice")
    request = build_request("GET", URL, signer.headers("GET", URL, token))

    first = client.verify(request)
    assert is_allowed(first), first.reason_code
    assert first.reason == Reason.Value("REASON_OK") and first.jkt == signer.jkt
    assert first.claims.sub == "alice" and response_headers(first) == []

    replay = client.verify(request)
    assert not is_allowed(replay)
    assert replay.reason_code == "replayed" and replay.http_status == 401
    assert dict(response_headers(replay))["WWW-Authenticate"].startswith("DPoP ")
    assert retries_logged(caplog) == 0  # a deny is an answer, never retried


async def test_async_client_allows_and_denies_a_wrong_htu(
    service: ServiceProcess, issuer: TestIssuer, signer: ProofSigner
) -> None:
    token = issuer.token(signer.key)
    async with AsyncVerifierClient(service.address, insecure=True) as client:
        allowed = await client.verify(build_request("GET", URL, signer.headers("GET", URL, token)))
        wrong_htu = signer.headers("GET", "https://api.test/admin", token)
        denied = await client.verify(build_request("GET", URL, wrong_htu))
    assert is_allowed(allowed) and allowed.jkt == signer.jkt
    assert denied.reason_code == "proof_htu_mismatch"


def test_the_transport_must_be_chosen_explicitly() -> None:
    with pytest.raises(ValueError, match="tls"):
        VerifierClient("127.0.0.1:1")
    with pytest.raises(ValueError, match="tls"):
        VerifierClient("127.0.0.1:1", tls=TLS(), insecure=True)


# --- failures: retried only when the verifier is unreachable ------------------------------------


async def test_an_unreachable_verifier_is_retried_then_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dpop_verifier_client")
    address = f"127.0.0.1:{free_port()}"
    async with AsyncVerifierClient(address, insecure=True, retry=FAST_RETRY) as client:
        with pytest.raises(VerifierError) as failure:
            await client.verify(build_request("GET", URL, {}), timeout=5)
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE
    assert failure.value.attempts == 3 and retries_logged(caplog) == 2


def test_sync_client_without_retries_raises_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dpop_verifier_client")
    with (
        VerifierClient(f"127.0.0.1:{free_port()}", insecure=True, retry=NO_RETRY) as client,
        pytest.raises(VerifierError) as failure,
    ):
        client.verify(build_request("GET", URL, {}))
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE
    assert failure.value.attempts == 1 and retries_logged(caplog) == 0


def test_retries_reach_a_verifier_that_comes_up_during_the_call(
    tmp_path: Path, issuer: TestIssuer, signer: ProofSigner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dpop_verifier_client")
    address = f"127.0.0.1:{free_port()}"
    token = issuer.token(signer.key)
    request = build_request("GET", URL, signer.headers("GET", URL, token))
    patient = RetryPolicy(max_attempts=200, initial_backoff=0.05, max_backoff=0.2)
    outcome: list[Any] = []

    def call() -> None:
        with VerifierClient(address, insecure=True, retry=patient, timeout=30) as client:
            try:
                outcome.append(client.verify(request))
            except VerifierError as exc:  # reported by the assertion below
                outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()  # the first attempts find nothing listening
    with running_service(tmp_path, issuer, env={"DPOP_LISTEN": address}):
        caller.join(timeout=40)
    assert outcome and not isinstance(outcome[0], VerifierError), outcome
    assert is_allowed(outcome[0]) and retries_logged(caplog) >= 1


def test_a_deadline_too_short_for_any_answer_raises_deadline_exceeded(
    client: VerifierClient,
) -> None:
    with pytest.raises(VerifierError) as failure:
        client.verify(build_request("GET", URL, {}), timeout=0)
    assert failure.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


# --- TLS and mutual TLS --------------------------------------------------------------------------


def test_mutual_tls(tmp_path: Path, issuer: TestIssuer, signer: ProofSigner) -> None:
    pki = make_pki(tmp_path)
    env = {
        "DPOP_TLS_CERT_FILE": str(pki.server_cert_file),
        "DPOP_TLS_KEY_FILE": str(pki.server_key_file),
        "DPOP_TLS_CLIENT_CA_FILE": str(pki.ca_file),
    }
    token = issuer.token(signer.key)
    request = build_request("GET", URL, signer.headers("GET", URL, token))
    with running_service(tmp_path, issuer, env=env) as service:
        tls = TLS.from_files(pki.ca_file, pki.client_cert_file, pki.client_key_file)
        with VerifierClient(service.address, tls=tls) as client:
            assert is_allowed(client.verify(request))
        without_certificate = TLS.from_files(pki.ca_file)
        with (
            VerifierClient(service.address, tls=without_certificate, retry=FAST_RETRY) as client,
            pytest.raises(VerifierError) as failure,
        ):
            client.verify(build_request("GET", URL, {}))
        with (
            VerifierClient(service.address, insecure=True, retry=FAST_RETRY) as client,
            pytest.raises(VerifierError),
        ):
            client.verify(build_request("GET", URL, {}))
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE


# --- requests from WSGI and ASGI -----------------------------------------------------------------

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def protected_wsgi_app(client: VerifierClient) -> WsgiApp:
    """What an application does with the client: ask, then serve or answer the deny."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            answer = client.verify(request_from_wsgi(environ))
        except VerifierError:
            start_response("503 Service Unavailable", [])
            return [b""]
        body = json.dumps({"reason": answer.reason_code, "sub": answer.claims.sub}).encode()
        status = "200 OK" if is_allowed(answer) else f"{answer.http_status} Denied"
        start_response(status, [("Content-Type", "application/json"), *response_headers(answer)])
        return [body]

    return app


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_wsgi_request_through_a_live_server(
    client: VerifierClient, issuer: TestIssuer, signer: ProofSigner
) -> None:
    server = make_server("127.0.0.1", 0, protected_wsgi_app(client), handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        token = issuer.token(signer.key, subject="wsgi-user")
        # The proof's htu has no query: the verifier compares without it (RFC 9449 §4.3).
        headers = signer.headers("POST", f"{base}/orders/%7Bid%7D", token)
        target = f"{base}/orders/%7Bid%7D?page=2"
        request = urllib.request.Request(target, data=b"{}", headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200
            assert json.loads(reply.read()) == {"reason": "ok", "sub": "wsgi-user"}
        with pytest.raises(urllib.error.HTTPError) as replayed:
            urllib.request.urlopen(request, timeout=10)
        assert replayed.value.code == 401
        assert json.loads(replayed.value.read())["reason"] == "replayed"
        assert 'error="invalid_dpop_proof"' in replayed.value.headers["WWW-Authenticate"]
    finally:
        server.shutdown()
        server.server_close()


def test_wsgi_environ_url_reconstruction() -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "wsgi.url_scheme": "https",
        "SERVER_NAME": "api.example.com",
        "SERVER_PORT": "443",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/caf\xc3\xa9 menu",  # PEP 3333: the raw bytes, decoded as latin-1
        "QUERY_STRING": "x=1",
        "HTTP_AUTHORIZATION": "DPoP t",
        "HTTP_DPOP": "p",
        "REMOTE_ADDR": "192.0.2.7",
    }
    request = request_from_wsgi(environ, route="menu")
    assert request.target_uri == "https://api.example.com/app/caf%C3%A9%20menu?x=1"
    assert (list(request.authorization), list(request.dpop)) == (["DPoP t"], ["p"])
    assert (request.client_address, request.route) == ("192.0.2.7", "menu")
    behind_proxy = request_from_wsgi(
        {**environ, "HTTP_HOST": "10.0.0.5:8080"}, public_origin="https://api.example.com/"
    )
    assert behind_proxy.target_uri.startswith("https://api.example.com/app/")


def asgi_scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "scheme": "https",
        "server": ("10.0.0.5", 8443),
        "path": "/orders",
        "raw_path": b"/orders",
        "query_string": b"page=2",
        "headers": headers,
        "client": ("192.0.2.9", 50000),
    }
    scope.update(extra)
    return scope


async def test_asgi_scope_requests_keep_duplicate_headers_apart(
    service: ServiceProcess, issuer: TestIssuer, signer: ProofSigner
) -> None:
    token = issuer.token(signer.key)
    headers = signer.headers("GET", URL, token)
    raw = [(b"host", b"api.test"), (b"authorization", headers["Authorization"].encode())]
    dpop = (b"dpop", headers["DPoP"].encode())
    valid, duplicated = asgi_scope([*raw, dpop]), asgi_scope([*raw, dpop, dpop])
    async with AsyncVerifierClient(service.address, insecure=True) as client:
        twice = await client.verify(request_from_asgi(duplicated))
        allowed = await client.verify(request_from_asgi(valid))
    assert twice.reason_code == "proof_multiple"
    assert is_allowed(allowed), allowed.reason_code


def test_asgi_url_reconstruction() -> None:
    no_host = asgi_scope([], raw_path=None, root_path="/api", path="/a b")
    assert request_from_asgi(no_host).target_uri == "https://10.0.0.5:8443/api/a%20b?page=2"
    assert request_from_asgi(no_host).client_address == "192.0.2.9"
    public = request_from_asgi(no_host, public_origin="https://api.example.com")
    assert public.target_uri == "https://api.example.com/api/a%20b?page=2"
    with pytest.raises(ValueError, match="http scope"):
        request_from_asgi({"type": "websocket"})
