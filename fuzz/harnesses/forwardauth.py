"""A gateway's forward-auth request, as bytes on the wire -> waitress's parser -> the
forward-auth application (verifier/doors/forward_auth.py) -> a decision -> an HTTP answer.

Input: the raw bytes of one HTTP/1.1 request, as the listener receives them. waitress parses
them (what it rejects gets its own 4xx and never reaches the application); a complete request
becomes the WSGI environ the application reads, from a trusted or an untrusted peer, through
the whole engine with the fixed issuer, a memory replay store and nonces. Documented outcomes:
none. The application answers every request with a well-formed status and never with
``internal_error`` (what it answers after an unexpected exception).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from waitress.adjustments import Adjustments  # type: ignore[import-untyped]
from waitress.parser import HTTPRequestParser  # type: ignore[import-untyped]

from fuzz.harness import Harness
from fuzz.harnesses.extauthz import ENGINE
from fuzz.harnesses.htu import PUBLIC_BASE_URLS, ROUTES, TRUST_FORWARDED
from verifier.doors.forward_auth import ForwardAuthApp, ForwardAuthOptions
from verifier.doors.target_uri import PublicUrlOptions

ADJUSTMENTS = Adjustments(max_request_header_size=65536, max_request_body_size=65536)
STATUSES = frozenset({200, 400, 401, 403, 431, 503})


def environ_of(data: bytes, peer: str) -> dict[str, Any] | None:
    """The environ waitress would hand the application, or None if it answers itself."""
    parser = HTTPRequestParser(ADJUSTMENTS)
    while data:
        used = parser.received(data)
        if parser.completed or used <= 0:
            break
        data = data[used:]
    if not parser.completed or parser.error is not None or parser.empty:
        return None
    environ: dict[str, Any] = {"REMOTE_ADDR": peer, "REQUEST_METHOD": parser.command}
    for key, value in parser.headers.items():
        if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            environ["HTTP_" + key] = value
    return environ


def answer(data: bytes, peer: str, public_url: PublicUrlOptions) -> None:
    environ = environ_of(data, peer)
    if environ is None:
        return
    app = ForwardAuthApp(ENGINE, ForwardAuthOptions(routes=ROUTES, public_url=public_url))
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, headers

    body = b"".join(app(environ, start_response))
    status = int(got["status"].split(" ", 1)[0])
    assert status in STATUSES, got["status"]
    for name, value in got["headers"]:
        assert "\r" not in value and "\n" not in value, (name, value)
    if body:
        assert set(json.loads(body)) == {"error", "error_description"}


HARNESS = Harness(
    "forwardauth",
    (
        functools.partial(answer, peer="127.0.0.1", public_url=TRUST_FORWARDED),
        functools.partial(answer, peer="127.0.0.1", public_url=PUBLIC_BASE_URLS),
        functools.partial(answer, peer="192.0.2.1", public_url=TRUST_FORWARDED),
    ),
    (),
    max_len=16384,
)
