"""The Python client library (clients/python) against the real ``dpop-verifier serve`` process:
sync and asyncio calls, requests built from a live WSGI server and from ASGI scopes, the WSGI
and ASGI middlewares mounted on a sub-path and behind a prefix-stripping proxy, TLS with client
certificates, deadlines, retries that happen for transport failures only, and the proof signer.
(test_python_package.py installs the package alone, as its users do.)"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
import pytest
from dpop_verifier_client import (
    ANSWER_KEY,
    NO_RETRY,
    TLS,
    ASGIMiddleware,
    AsyncVerifierClient,
    Reason,
    RetryPolicy,
    VerifierClient,
    VerifierError,
    WSGIMiddleware,
    build_request,
    check_public_origin,
    is_allowed,
    request_from_asgi,
    request_from_wsgi,
    response_headers,
)
from dpop_verifier_client.proof import ProofSigner

from tests.support.net import free_port
from tests.support.pki import TestPki
from tests.support.service import ServiceProcess, TestIssuer, running_service
from verifier.jose.rfc7638 import thumbprint

URL = "https://api.test/orders"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def signer() -> ProofSigner:
    return ProofSigner.generate()


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
    token = issuer.token(signer, subject="alice")
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
    token = issuer.token(signer)
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
    token = issuer.token(signer)
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


def test_retries_never_run_past_the_deadline(dead_address: str) -> None:
    endless = RetryPolicy(max_attempts=10_000, initial_backoff=0.02, max_backoff=0.02)
    with VerifierClient(dead_address, insecure=True, retry=endless, timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(VerifierError) as failure:
            client.verify(build_request("GET", URL, {}))
        elapsed = time.monotonic() - started
    assert 1 < failure.value.attempts < 10_000
    # The last wait is skipped when it would end past the deadline; the margin is a hang guard.
    assert elapsed < 0.5 + 1.0, elapsed


# --- TLS and mutual TLS --------------------------------------------------------------------------


def test_tls_with_a_server_name_override(
    tls_service: ServiceProcess, pki: TestPki, issuer: TestIssuer, signer: ProofSigner
) -> None:
    token = issuer.token(signer)
    request = build_request("GET", URL, signer.headers("GET", URL, token))
    # The certificate names 127.0.0.1 and localhost; the override is what is checked.
    with VerifierClient(
        tls_service.address, tls=TLS.from_files(pki.ca_file, server_name="localhost")
    ) as client:
        assert is_allowed(client.verify(request))
    wrong = TLS.from_files(pki.ca_file, server_name="verifier.example")
    with (
        VerifierClient(tls_service.address, tls=wrong, retry=NO_RETRY) as client,
        pytest.raises(VerifierError) as failure,
    ):
        client.verify(build_request("GET", URL, {}))
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(
    mtls_service: ServiceProcess, pki: TestPki, issuer: TestIssuer, signer: ProofSigner
) -> None:
    token = issuer.token(signer)
    request = build_request("GET", URL, signer.headers("GET", URL, token))
    tls = TLS.from_files(pki.ca_file, pki.client_cert_file, pki.client_key_file)
    with VerifierClient(mtls_service.address, tls=tls) as client:
        assert is_allowed(client.verify(request))
    without_certificate = TLS.from_files(pki.ca_file)
    with (
        VerifierClient(mtls_service.address, tls=without_certificate, retry=FAST_RETRY) as client,
        pytest.raises(VerifierError) as failure,
    ):
        client.verify(build_request("GET", URL, {}))
    with (
        VerifierClient(mtls_service.address, insecure=True, retry=FAST_RETRY) as client,
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
        token = issuer.token(signer, subject="wsgi-user")
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


@pytest.mark.parametrize(
    ("public_origin", "accepted"),
    [
        ("https://api.example.com", "https://api.example.com"),
        ("https://api.example.com/", "https://api.example.com"),
        ("https://api.example.com:8443/api/", "https://api.example.com:8443/api"),
        ("http://[2001:db8::1]:8080", "http://[2001:db8::1]:8080"),
        ("ftp://api.example.com", None),
        ("api.example.com", None),
        ("https://", None),
        ("https://user@api.example.com", None),
        ("https://api.example.com/?x=1", None),
        ("https://api.example.com/?", None),
        ("https://api.example.com/#top", None),
        ("https://api.example.com:port", None),
        ("https://api.example.com:99999", None),
    ],
)
def test_public_origins(public_origin: str, accepted: str | None) -> None:
    if accepted is None:
        with pytest.raises(ValueError, match="public_origin must look like"):
            check_public_origin(public_origin)
    else:
        assert check_public_origin(public_origin) == accepted


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
    token = issuer.token(signer)
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


# --- the WSGI and ASGI middlewares ------------------------------------------------------------


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The protected application: it only runs on allow, with the answer in the environ."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"sub": environ[ANSWER_KEY].claims.sub}).encode()]


def mount(prefix: str, inner: WsgiApp, root: WsgiApp) -> WsgiApp:
    """What a framework's mount does (werkzeug's DispatcherMiddleware, Django's FORCE_SCRIPT_NAME):
    the prefix moves from PATH_INFO to SCRIPT_NAME (PEP 3333)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            script_name = environ.get("SCRIPT_NAME", "") + prefix
            environ = {**environ, "SCRIPT_NAME": script_name, "PATH_INFO": path[len(prefix) :]}
            return inner(environ, start_response)
        return root(environ, start_response)

    return app


@contextmanager
def serving(app: WsgiApp) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_wsgi_middleware_mounted_on_a_sub_path_and_at_the_root(
    client: VerifierClient, issuer: TestIssuer, signer: ProofSigner
) -> None:
    token = issuer.token(signer, subject="mounted")
    app = mount("/shop", WSGIMiddleware(hello, client), WSGIMiddleware(hello, client))
    with serving(app) as base:
        mounted = post(
            f"{base}/shop/orders?x=1", signer.headers("POST", f"{base}/shop/orders", token)
        )
        at_root = post(f"{base}/orders", signer.headers("POST", f"{base}/orders", token))
        # A proof for the path the mounted application sees is not one for the client's URL.
        stripped = post(f"{base}/shop/orders", signer.headers("POST", f"{base}/orders", token))
    assert mounted == (200, {"sub": "mounted"})
    assert at_root == (200, {"sub": "mounted"})
    assert stripped == (401, {"error": "invalid_dpop_proof"})


def test_wsgi_middleware_behind_a_proxy_that_strips_a_prefix(
    client: VerifierClient, issuer: TestIssuer, signer: ProofSigner
) -> None:
    """The client calls https://api.example.com/api/orders; the proxy forwards /orders."""
    token = issuer.token(signer, subject="proxied")
    public = "https://api.example.com/api"
    with serving(WSGIMiddleware(hello, client, public_origin=public)) as base:
        allowed = post(f"{base}/orders", signer.headers("POST", f"{public}/orders", token))
        internal = post(f"{base}/orders", signer.headers("POST", f"{base}/orders", token))
    assert allowed == (200, {"sub": "proxied"})
    assert internal == (401, {"error": "invalid_dpop_proof"})
    with pytest.raises(ValueError, match="public_origin"):
        WSGIMiddleware(hello, client, public_origin="https://api.example.com/?x=1")


def test_wsgi_middleware_answers_503_when_the_verifier_is_unreachable(
    dead_address: str, issuer: TestIssuer, signer: ProofSigner
) -> None:
    token = issuer.token(signer)
    with (
        VerifierClient(dead_address, insecure=True, retry=FAST_RETRY) as dead,
        serving(WSGIMiddleware(hello, dead)) as base,
    ):
        answer = post(f"{base}/orders", signer.headers("POST", f"{base}/orders", token))
    assert answer == (503, {"error": "temporarily_unavailable"})


async def call_asgi(app: Any, scope: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


async def asgi_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = json.dumps({"sub": scope[ANSWER_KEY].claims.sub, "path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_asgi_middleware_mounted_on_a_sub_path(
    service: ServiceProcess, dead_address: str, issuer: TestIssuer, signer: ProofSigner
) -> None:
    token = issuer.token(signer, subject="asgi")
    headers = signer.headers("GET", "https://api.test/api/orders", token)
    raw = [(b"host", b"api.test")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    # A sub-application mounted at /api (Starlette's Mount): root_path holds the prefix.
    mounted = asgi_scope(raw, raw_path=None, root_path="/api", path="/orders", query_string=b"")
    async with AsyncVerifierClient(service.address, insecure=True) as client:
        app = ASGIMiddleware(asgi_hello, client)
        allowed = await call_asgi(app, mounted)
        replayed = await call_asgi(app, mounted)
    async with AsyncVerifierClient(dead_address, insecure=True, retry=FAST_RETRY) as dead:
        unavailable = await call_asgi(ASGIMiddleware(asgi_hello, dead), mounted)

    assert allowed[0] == 200 and json.loads(allowed[2]) == {"sub": "asgi", "path": "/orders"}
    status, reply_headers, body = replayed
    assert (status, json.loads(body)) == (401, {"error": "invalid_dpop_proof"})
    assert b'error="invalid_dpop_proof"' in reply_headers[b"www-authenticate"]
    assert (unavailable[0], json.loads(unavailable[2])) == (
        503,
        {"error": "temporarily_unavailable"},
    )


# --- the proof signer ---------------------------------------------------------------------------


def test_the_signer_thumbprint_is_the_verifier_thumbprint_and_survives_a_round_trip() -> None:
    signer = ProofSigner.generate()
    assert signer.jkt == thumbprint(signer.public_jwk)
    restored = ProofSigner.from_jwk(signer.private_jwk())
    assert restored.jkt == signer.jkt and restored.public_jwk == signer.public_jwk


def test_a_proof_names_the_url_without_query_and_fragment(signer: ProofSigner) -> None:
    proof = signer.proof("GET", "https://api.test/orders?page=2#top", access_token="t", nonce="n")
    header, payload = (
        json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        for part in proof.split(".")[:2]
    )
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": signer.public_jwk}
    assert payload["htu"] == "https://api.test/orders" and payload["htm"] == "GET"
    assert payload["nonce"] == "n" and len(payload["ath"]) == 43
