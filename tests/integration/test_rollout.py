"""``dpop-verifier rollout`` on a real decision log: a running service with a report-only route
decides a known mix of requests, and the report counts, per route, what was (or would have been)
refused, by reason and by client."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import ServiceProcess, TestIssuer, running_service
from verifier.cli import main
from verifier.cli.mint import generate_key, make_proof
from verifier.cli.rollout import decision_fields, summarize

BETA = "https://api.test/beta/orders"
ORDERS = "https://api.test/orders"


@pytest.fixture(scope="module")
def decision_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The service's stderr (its log, with one JSON line per decision) after a known mix."""
    folder = tmp_path_factory.mktemp("rollout")
    issuer = TestIssuer(folder)
    routes = [{"name": "beta", "path_prefix": "/beta", "mode": "report-only"}]
    # Metrics on, as the chart has them: the log then names the client of a refused request.
    env = {"DPOP_METRICS_LISTEN": "127.0.0.1:0"}
    with running_service(folder, issuer, env, routes=routes) as service:
        _traffic(service, issuer)
        service.stop()  # the whole log is written
        lines = service.stderr_lines
    path = folder / "decisions.log"
    path.write_text("".join(lines), encoding="utf-8")
    yield path


def _traffic(service: ServiceProcess, issuer: TestIssuer) -> None:
    app = generate_key("ES256")
    app_token = issuer.token(app, client_id="app-a")
    legacy_token = issuer.token(None, client_id="legacy-b")  # not DPoP-bound: a Bearer client

    def dpop(url: str, proof: str | None = None) -> dict[str, Any]:
        proof = proof or make_proof(app, "GET", url, access_token=app_token)
        return {"method": "GET", "target_uri": url, "authorization": [f"DPoP {app_token}"],
                "dpop": [proof]}  # fmt: skip

    bearer = {"method": "GET", "target_uri": BETA, "authorization": [f"Bearer {legacy_token}"]}
    replayed = make_proof(app, "GET", ORDERS, access_token=app_token)
    answers = [
        service.verify(**dpop(BETA)),
        service.verify(**dpop(BETA)),
        *(service.verify(**bearer) for _ in range(3)),
        service.verify(method="GET", target_uri=BETA),  # no credentials at all
        service.verify(**dpop(ORDERS, replayed)),
        service.verify(**dpop(ORDERS, replayed)),
    ]
    reasons = [a.reason_code for a in answers]
    assert reasons == ["ok", "ok", *["bearer_not_allowed"] * 3, "authorization_missing", "ok",
                       "replayed"]  # fmt: skip


def test_the_report_counts_what_report_only_would_refuse_and_whose(
    decision_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollout", str(decision_log)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("8 decisions read; ")
    beta = lines.index("route beta (report-only): 6 requests, would refuse 4 (66.67%)")
    default = lines.index("route default (enforcing): 2 requests, refused 1 (50.00%)")
    assert beta < default  # report-only routes first
    section = "\n".join(lines[beta:default])
    assert "  bearer_not_allowed                        3   50.00%" in section
    assert "  authorization_missing                     1   16.67%" in section
    assert "    legacy-b " in section and "       3        3  bearer_not_allowed 3" in section
    assert (
        "    (unknown)                -                       1        1  authorization_missing 1"
        in section
    )
    assert "app-a" not in section  # never refused on beta
    assert "app-a" in "\n".join(lines[default:]) and "replayed 1" in out


def test_the_json_report_and_a_route_filter(
    decision_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollout", "--json", "--route", "beta", str(decision_log)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["decisions"] == 6 and report["rates_meaningful"] is True
    (beta,) = report["routes"]
    assert (beta["route"], beta["mode"], beta["requests"], beta["refused"]) == (
        "beta",
        "report-only",
        6,
        4,
    )
    assert beta["refused_rate"] == round(4 / 6, 6)
    assert beta["reasons"][0] == {"reason": "bearer_not_allowed", "count": 3, "rate": 0.5}
    legacy = next(c for c in beta["clients"] if c["client_id"] == "legacy-b")
    assert legacy["refused"] == legacy["requests"] == 3 and len(legacy["jkt_hash"]) in (1, 16)
    assert legacy["reasons"] == {"bearer_not_allowed": 3}


def test_stdin_gzip_and_prefixed_lines_read_the_same(decision_log: Path, tmp_path: Path) -> None:
    text = decision_log.read_text(encoding="utf-8")
    prefixed = "".join(f"[pod/dv-1/verifier] {line}" for line in text.splitlines(keepends=True))
    packed = tmp_path / "decisions.log.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    from_stdin = subprocess.run(
        [sys.executable, "-m", "verifier", "rollout", "--json"],
        input=prefixed + "not json\n{\"event\": \"other\"}\n", capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert from_stdin.returncode == 0, from_stdin.stderr
    expected = summarize(text.splitlines()).to_json(top=10)
    got = json.loads(from_stdin.stdout)
    assert got["routes"] == expected["routes"] and got["decisions"] == 8
    assert got["skipped_lines"] == expected["skipped_lines"] + 2
    assert summarize(gzip.decompress(packed.read_bytes()).decode().splitlines()).to_json() == (
        summarize(text.splitlines()).to_json()
    )


def test_lines_that_are_not_decisions_are_skipped() -> None:
    assert decision_fields('{"event":"decision","decision":"allow","reason":"ok"}') is not None
    for line in ("", "text", "{", '{"event":"decision"}', '["event"]', "{" + "x" * 70000 + "}",
                 '{"event":"decision","decision":"maybe","reason":"ok"}'):  # fmt: skip
        assert decision_fields(line) is None
    report = summarize(['{"event":"decision","decision":"deny","reason":"replayed","route":"r"}'])
    assert report.decisions == 1 and not report.allowed_seen


def test_an_unreadable_log_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["rollout", str(tmp_path / "nope.log")])
    assert str(raised.value) == (
        f"error: cannot read the decision log {tmp_path / 'nope.log'}: No such file or directory"
    )
