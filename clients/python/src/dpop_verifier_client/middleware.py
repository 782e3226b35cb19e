"""Ask the verifier before the application sees a request: a WSGI and an ASGI middleware.

On allow the application runs, with the verifier's answer in ``environ["dpop.answer"]`` (WSGI)
or ``scope["dpop.answer"]`` (ASGI), and a ``DPoP-Nonce`` the verifier issued is added to its
response. On a deny the application does not run: the answer is the verifier's HTTP status,
``WWW-Authenticate`` and ``DPoP-Nonce`` headers and ``{"error": <rfc_error>}``. When the
verifier gives no answer (:class:`VerifierError`) the answer is 503: never an allow, and never
reported as the client's fault.

Both work mounted under a sub-path (the full path is used, see :mod:`.http_request`); behind a
proxy pass ``public_origin``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any

from dpop_verifier_client._generated.dpop.verifier.v1.verifier_pb2 import VerifyResponse
from dpop_verifier_client._transport import VerifierError
from dpop_verifier_client.aio import AsyncVerifierClient
from dpop_verifier_client.client import VerifierClient
from dpop_verifier_client.decision import is_allowed, response_headers
from dpop_verifier_client.http_request import (
    check_public_origin,
    request_from_asgi,
    request_from_wsgi,
)

__all__ = ["ANSWER_KEY", "ASGIMiddleware", "WSGIMiddleware"]

log = logging.getLogger("dpop_verifier_client")

ANSWER_KEY = "dpop.answer"
"""Where the middlewares put the verifier's answer on allow: the WSGI environ or ASGI scope key."""

Headers = list[tuple[str, str]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNAVAILABLE_BODY = b'{"error":"temporarily_unavailable"}'


def denial(answer: VerifyResponse) -> tuple[int, Headers, bytes]:
    """Status, headers and body of the HTTP answer to a denied request."""
    body = json.dumps({"error": answer.rfc_error or "unauthorized"}).encode()
    headers = [("Content-Type", "application/json"), *response_headers(answer)]
    return answer.http_status or 401, headers, body


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Denied"


class WSGIMiddleware:
    """Wraps a WSGI application (Flask's ``app.wsgi_app``, Django's ``get_wsgi_application()``,
    ...) so that only requests the verifier allows reach it::

        app.wsgi_app = WSGIMiddleware(app.wsgi_app, client, public_origin="https://api.example.com")

    ``route`` and ``proof_only`` are passed on as in :func:`request_from_wsgi`.
    """

    def __init__(
        self,
        app: WSGIApp,
        client: VerifierClient,
        *,
        public_origin: str | None = None,
        route: str = "",
        proof_only: bool = False,
    ) -> None:
        self.app = app
        self.client = client
        self.public_origin = check_public_origin(public_origin) if public_origin else None
        self.route = route
        self.proof_only = proof_only

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = request_from_wsgi(
            environ, public_origin=self.public_origin, route=self.route, proof_only=self.proof_only
        )
        try:
            answer = self.client.verify(request)
        except VerifierError as exc:
            log.warning("no answer from the verifier (%s): 503", exc.code.name)
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [UNAVAILABLE_BODY]
        if not is_allowed(answer):
            status, headers, body = denial(answer)
            start_response(_status_line(status), headers)
            return [body]
        environ[ANSWER_KEY] = answer
        nonce = [(name, value) for name, value in response_headers(answer) if name == "DPoP-Nonce"]
        if not nonce:
            return self.app(environ, start_response)

        def start_with_nonce(status: str, headers: Headers, *exc_info: Any) -> Any:
            return start_response(status, [*headers, *nonce], *exc_info)

        return self.app(environ, start_with_nonce)


class ASGIMiddleware:
    """Wraps an ASGI application (Starlette, FastAPI, Django ASGI, ...) so that only HTTP
    requests the verifier allows reach it; other scopes (lifespan, websocket) pass through::

        app = ASGIMiddleware(app, client, public_origin="https://api.example.com")

    ``client`` is an :class:`AsyncVerifierClient`.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: AsyncVerifierClient,
        *,
        public_origin: str | None = None,
        route: str = "",
        proof_only: bool = False,
    ) -> None:
        self.app = app
        self.client = client
        self.public_origin = check_public_origin(public_origin) if public_origin else None
        self.route = route
        self.proof_only = proof_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        request = request_from_asgi(
            scope, public_origin=self.public_origin, route=self.route, proof_only=self.proof_only
        )
        try:
            answer = await self.client.verify(request)
        except VerifierError as exc:
            log.warning("no answer from the verifier (%s): 503", exc.code.name)
            await _respond(send, 503, [("Content-Type", "application/json")], UNAVAILABLE_BODY)
            return
        if not is_allowed(answer):
            await _respond(send, *denial(answer))
            return
        scope[ANSWER_KEY] = answer
        nonce = [
            (name.lower().encode(), value.encode("latin-1"))
            for name, value in response_headers(answer)
            if name == "DPoP-Nonce"
        ]
        if not nonce:
            await self.app(scope, receive, send)
            return

        async def send_with_nonce(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *nonce]}
            await send(message)

        await self.app(scope, receive, send_with_nonce)


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    raw = [(name.lower().encode(), value.encode("latin-1")) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
