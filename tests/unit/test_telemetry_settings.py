"""Which telemetry runs (``OTEL_*`` variables, off by default) and which decisions are logged."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from verifier.config import ConfigError, load_settings
from verifier.config.telemetry import telemetry_settings
from verifier.domain.model import Decision, RequestFacts, TokenClaims
from verifier.domain.reasons import Reason, RfcError, info
from verifier.telemetry import DecisionLog, DecisionScope, hash_jkt
from verifier.telemetry.logs import DecisionLineHandler, JsonFormatter


def test_everything_is_off_by_default() -> None:
    settings = telemetry_settings({})
    assert settings.trace_exporters == () and settings.metric_exporters == ()
    assert not settings.tracing


def test_an_otlp_endpoint_turns_on_otlp_over_grpc() -> None:
    settings = telemetry_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert settings.trace_exporters == ("otlp",) and settings.metric_exporters == ("otlp",)
    assert settings.traces_protocol == settings.metrics_protocol == "grpc"


def test_signal_specific_settings_win() -> None:
    settings = telemetry_settings(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "console",
        }
    )
    assert settings.trace_exporters == ("otlp",) and settings.traces_protocol == "http/protobuf"
    assert settings.metric_exporters == ("console",)


def test_none_and_sdk_disabled_turn_it_off() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_TRACES_EXPORTER": "none"}
    assert telemetry_settings(env).trace_exporters == ()
    assert telemetry_settings(env).metric_exporters == ("otlp",)
    assert not telemetry_settings({**env, "OTEL_SDK_DISABLED": "true"}).metric_exporters


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "none,console"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, "OTEL_METRICS_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        telemetry_settings(env)
    assert caught.value.setting == setting


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DPOP_DECISION_LOG": "some"}, "DPOP_DECISION_LOG"),
        ({"DPOP_DECISION_LOG_SAMPLE": "1.5"}, "DPOP_DECISION_LOG_SAMPLE"),
        ({"DPOP_LOG_FORMAT": "xml"}, "DPOP_LOG_FORMAT"),
        ({"DPOP_METRICS_LISTEN": "unix:/tmp/metrics"}, "DPOP_METRICS_LISTEN"),
    ],
)
def test_dpop_observability_settings_are_validated(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert caught.value.setting == setting


def _decision(reason: Reason) -> Decision:
    entry = info(reason)
    return Decision(
        allow=reason is Reason.OK,
        reason=reason,
        message=entry.message,
        rfc_error=entry.rfc_error if reason is not Reason.OK else RfcError.NONE,
        http_status=entry.http_status,
    )


def _logged(log: DecisionLog, reason: Reason, trace_id: int = 0) -> list[dict[str, object]]:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.decisions.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    log._logger = logger
    scope = DecisionScope(rpc_method="Verify", jkt="some-jkt")
    log.write(scope, _decision(reason), trace_id=trace_id, span_id=0, seconds=0.001)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_decision_log_modes_and_sampling() -> None:
    assert len(_logged(DecisionLog("all"), Reason.OK)) == 1
    assert _logged(DecisionLog("deny"), Reason.OK) == []
    assert len(_logged(DecisionLog("deny"), Reason.REPLAYED)) == 1
    assert _logged(DecisionLog("none"), Reason.REPLAYED) == []
    assert _logged(DecisionLog("all", 0.0), Reason.PROOF_MISSING) == []
    # Faults are always written, at ERROR, whatever the mode and the sample.
    (fault,) = _logged(DecisionLog("none", 0.0), Reason.REPLAY_STORE_UNAVAILABLE)
    assert fault["level"] == "ERROR" and fault["reason"] == "replay_store_unavailable"
    # The sampling choice follows the trace id: low 64 bits below the ratio are kept.
    assert len(_logged(DecisionLog("all", 0.5), Reason.OK, trace_id=(7 << 64) | 1)) == 1
    assert _logged(DecisionLog("all", 0.5), Reason.OK, trace_id=(7 << 64) | (1 << 63) + 1) == []


def test_decision_line_fields() -> None:
    (line,) = _logged(DecisionLog(), Reason.PROOF_HTU_MISMATCH, trace_id=0xABC)
    assert line["trace_id"] == f"{0xABC:032x}" and line["jkt_hash"] == hash_jkt("some-jkt")
    assert {k: line[k] for k in ("event", "decision", "reason", "rfc_error", "http_status")} == {
        "event": "decision",
        "decision": "deny",
        "reason": "proof_htu_mismatch",
        "rfc_error": "invalid_dpop_proof",
        "http_status": 401,
    }
    for key in ("timestamp", "route", "issuer", "subject", "client_id", "latency_ms", "rpc"):
        assert key in line
    assert "some-jkt" not in json.dumps(line)


def _lines_both_ways(
    decision: Decision, scope: DecisionScope, identity: dict[str, object] | None = None
) -> tuple[str, str]:
    """The line DecisionLog writes through DecisionLineHandler's fast path, and the one it
    writes through a LogRecord (the handler given a filter, which turns the fast path off)."""
    lines = []
    for fast in (True, False):
        stream = io.StringIO()
        logger = logging.Logger("test.decision-lines")  # not registered: a fresh one each time
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = DecisionLineHandler(stream)
        if identity:
            handler.set_identity(identity)
        if not fast:
            handler.addFilter(lambda record: True)
        logger.addHandler(handler)
        log = DecisionLog()
        log._logger = logger
        log.write(scope, decision, trace_id=0xABC, span_id=0xDEF, seconds=0.0123456)
        lines.append(stream.getvalue())
    return lines[0], lines[1]


@pytest.mark.parametrize("reason", [Reason.OK, Reason.PROOF_HTU_MISMATCH, Reason.INTERNAL_ERROR])
def test_decision_line_fast_path_writes_what_the_json_formatter_writes(reason: Reason) -> None:
    awkward = 'quote " backslash \\ newline \n tab \t nul \x00 é 漢 \U0001f600 \ud800'
    claims = TokenClaims(issuer="https://issuer.test", subject=awkward, client_id="c\u2028")
    facts = RequestFacts(method='GE"T', target_uri="https://api.test/", route="/orders")
    decision = replace(_decision(reason), claims=claims, alg="ES256", jkt="a-jkt")
    scope = DecisionScope(rpc_method="Check", facts=facts)
    for identity in (None, {"worker": "1", "pid": 4242}):
        fast, record = _lines_both_ways(decision, scope, identity)
        assert fast.endswith("}\n") and fast.count("\n") == 1 and record.count("\n") == 1
        fast_fields, record_fields = json.loads(fast), json.loads(record)
        # Same keys in the same order, same values, except the clock read a moment apart.
        assert list(fast_fields) == list(record_fields)
        fast_time = fast_fields.pop("timestamp")
        record_time = record_fields.pop("timestamp")
        assert fast_fields == record_fields
        assert fast_fields["subject"] == awkward and fast_fields["method"] == 'GE"T'
        assert fast_fields["level"] == ("ERROR" if reason is Reason.INTERNAL_ERROR else "INFO")
        assert (fast_fields.get("worker"), fast_fields.get("pid")) == (
            (None, None) if identity is None else ("1", 4242)
        )
        parsed = [datetime.fromisoformat(t) for t in (fast_time, record_time)]
        assert len(fast_time) == len(record_time) == len("2026-11-26T03:35:57.152+00:00")
        assert abs((parsed[0] - parsed[1]).total_seconds()) < 5
        assert fast.isascii()


def test_a_failing_decision_log_stream_never_breaks_a_decision(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    logger = logging.Logger("test.broken-decision-log")
    logger.setLevel(logging.INFO)
    logger.addHandler(DecisionLineHandler(Broken()))
    log = DecisionLog()
    log._logger = logger
    scope = DecisionScope(rpc_method="Check")
    log.write(scope, _decision(Reason.OK), trace_id=1, span_id=2, seconds=0.001)  # no raise
    assert "decision log write failed" in capsys.readouterr().err


def test_decision_line_timestamps_match_isoformat() -> None:
    from verifier.telemetry.logs import timestamps

    for now in (0.0, 1_764_129_357.152, 1_764_129_357.9999, 1_764_129_358.0005, 4_102_444_799.5):
        expected = datetime.fromtimestamp(int(now * 1000) / 1000, UTC).isoformat(
            timespec="milliseconds"
        )
        assert timestamps.format(now) == expected


def test_metrics_endpoint_on_a_taken_port_names_the_setting() -> None:
    import socket

    from verifier.app.telemetry import build_telemetry, start_metrics_endpoint
    from verifier.config import Settings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        telemetry = build_telemetry(Settings(metrics_listen=address), telemetry_settings({}))
        with pytest.raises(RuntimeError, match="DPOP_METRICS_LISTEN"):
            start_metrics_endpoint(telemetry, address)
    telemetry.shutdown()
