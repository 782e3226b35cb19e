"""Key fetches traced and counted (a real JWKS server on loopback), and the exporters built from
the standard ``OTEL_*`` variables: OTLP over HTTP/protobuf to a real receiver, and the console.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from tests.support.otlp_receiver import attributes, otlp_http_receiver, wait_for
from tests.support.service import AUDIENCE
from tests.support.telemetry import Observed, captured_logs, inprocess_service, observed_telemetry
from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.app.telemetry import build_telemetry
from verifier.cli.mint import generate_key, jwks_for, make_access_token, make_proof
from verifier.config import IssuerSettings, Settings
from verifier.config.telemetry import telemetry_settings
from verifier.domain.model import Decision
from verifier.domain.reasons import Reason, info

GOOD, BROKEN = "https://good.test", "https://broken.test"
URL = "https://api.test/orders"


@contextmanager
def jwks_server(documents: dict[str, Any]) -> Iterator[str]:
    """Serves ``documents`` by path as JSON; any other path is a 500."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in documents:
                self.send_error(500)
                return
            body = json.dumps(documents[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _counts(observed: Observed, name: str, *keys: str) -> dict[tuple[Any, ...], Any]:
    return {tuple(p.attributes[k] for k in keys): p.value for p in observed.metric_points(name)}


async def test_key_fetches_are_traced_and_refreshes_and_failures_counted() -> None:
    issuer_key, client = generate_key("ES256"), generate_key("ES256")
    observed = observed_telemetry()
    with jwks_server({"/jwks": jwks_for(issuer_key)}) as base:
        settings = Settings(
            listen="127.0.0.1:0",
            shutdown_grace_seconds=0,
            issuers=(
                IssuerSettings(issuer=GOOD, audience=AUDIENCE, jwks_uri=f"{base}/jwks"),
                IssuerSettings(issuer=BROKEN, audience=AUDIENCE, jwks_uri=f"{base}/down"),
            ),
        )
        tokens = {
            name: make_access_token(issuer_key, issuer=name, jkt=client.jkt, audience=AUDIENCE)
            for name in (GOOD, BROKEN)
        }
        with captured_logs(observed):
            async with inprocess_service(settings, observed.telemetry) as (stub, _, _):
                reasons = []
                for name in (GOOD, BROKEN):
                    request = pb.VerifyRequest(
                        method="GET",
                        target_uri=URL,
                        authorization=[f"DPoP {tokens[name]}"],
                        dpop=[make_proof(client, "GET", URL, access_token=tokens[name])],
                    )
                    reasons.append((await stub.Verify(request)).reason_code)
    assert reasons == ["ok", "key_source_unavailable"]

    fetches = [s for s in observed.finished() if s.name == "dpop.key_source.fetch"]
    by_issuer: dict[str, list[Any]] = {}
    for span in fetches:
        by_issuer.setdefault(span.attributes["dpop.token.issuer"], []).append(span)
    assert all(s.status.status_code is StatusCode.UNSET for s in by_issuer[GOOD])
    assert all(s.status.status_code is StatusCode.ERROR for s in by_issuer[BROKEN])
    assert by_issuer[BROKEN][0].attributes["error.type"] == "HTTPError"
    assert by_issuer[GOOD][0].attributes["url.full"] == f"{base}/jwks"

    # The broken issuer's lookup during the request: an error span under the token span.
    (lookup,) = [
        s
        for s in observed.finished()
        if s.name == "dpop.key_source.keys" and s.attributes["dpop.token.issuer"] == BROKEN
    ]
    assert lookup.status.status_code is StatusCode.ERROR
    refreshes = _counts(
        observed, "dpop_verifier.key_source.refreshes", "dpop.token.issuer", "outcome"
    )
    assert refreshes[(GOOD, "success")] >= 1 and (GOOD, "failure") not in refreshes
    assert refreshes[(BROKEN, "failure")] >= 1 and (BROKEN, "success") not in refreshes
    failures = _counts(
        observed, "dpop_verifier.key_source.failures", "dpop.token.issuer", "failure"
    )
    assert failures[(BROKEN, "fetch")] >= 1 and failures[(BROKEN, "unavailable")] == 1
    (line,) = [x for x in observed.decision_lines() if x["reason"] == "key_source_unavailable"]
    assert line["level"] == "ERROR"


def _one_decision(settings: Settings) -> None:
    telemetry = build_telemetry(settings, telemetry_settings())
    reason = info(Reason.OK)
    with telemetry.decision_scope("dpop.verifier.v1.VerifierService/Verify") as scope:
        scope.decision = Decision(
            allow=True,
            reason=Reason.OK,
            message=reason.message,
            rfc_error=reason.rfc_error,
            http_status=200,
        )
    telemetry.shutdown()  # flushes the batch span processor and the metric reader


def test_otlp_over_http_protobuf(monkeypatch: pytest.MonkeyPatch) -> None:
    with otlp_http_receiver() as (endpoint, store):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "over-http")
        _one_decision(Settings())
        spans = wait_for(store.spans, timeout=5)
        assert "dpop_verifier.decisions" in wait_for(store.metric_names, timeout=5)
    ((resource, span),) = spans
    assert resource["service.name"] == "over-http"
    assert span.name == "dpop.verifier.v1.VerifierService/Verify"
    assert attributes(span.attributes)["dpop.decision"] == "allow"


def test_console_exporter_writes_to_stderr_not_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    _one_decision(Settings())
    captured = capsys.readouterr()
    assert "dpop.verifier.v1.VerifierService/Verify" in captured.err
    assert captured.out == ""  # stdout carries the "listening on" line only


def test_default_service_name_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    with otlp_http_receiver() as (endpoint, store):
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{endpoint}/v1/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
        _one_decision(Settings())
        ((resource, _),) = wait_for(store.spans, timeout=5)
    assert resource["service.name"] == "dpop-verifier"
