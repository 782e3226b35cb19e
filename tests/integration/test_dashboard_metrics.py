"""The Grafana dashboard and the PrometheusRule work on the metrics the service really serves.

The service runs under a little traffic of every kind the dashboard shows (allowed, denied,
replayed, report-only would-be denials, a full replay store, an issuer whose keys load and one
whose keys do not), and a real Prometheus (Debian's ``prometheus``; ``make install-prometheus``)
scrapes it and evaluates the chart's rules. Then:

* every metric the dashboard and the rules name is in the service's ``/metrics``, and every label
  they group or match by is on the service's metrics (or is Prometheus's ``job``/``namespace``);
* every query of the dashboard runs and returns data;
* every rule evaluates without error, and every alert is pending or firing: the traffic is made
  to trip each one (the chart is rendered with thresholds the traffic exceeds), so each alert's
  expression is shown to select real series.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy import chart
from tests.support.auth_server import AuthServer
from tests.support.net import free_port
from tests.support.service import ServiceProcess
from verifier.cli.mint import generate_key, make_proof

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "dpop-verifier.json"
AUDIENCE = "https://api.test"
URL = "https://api.test/orders"
BETA = "https://api.test/beta/orders"
RULE_VALUES = {
    "metrics": {
        "prometheusRule": {
            "enabled": True,
            # Thresholds this little traffic exceeds, so that every alert becomes pending.
            "denySpike": {"minPerSecond": 0, "ratio": 0.01},
            "latency": {"p99Seconds": 0},
        }
    }
}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$namespace": ".*", "$job": ".*"}
PROMETHEUS_LABELS = {"job", "namespace", "instance"}
HANG_GUARD_SECONDS = 60.0


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result

    def wait_for(self, what: str, check: Any) -> Any:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"Prometheus never showed {what}:\n{self.log.read_text()[-3000:]}")


def _prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run `make install-prometheus`", pytrace=False)
    return binary


@pytest.fixture(scope="module")
def issuers() -> Iterator[tuple[AuthServer, AuthServer]]:
    """An issuer whose keys load, and one that is down (its keys never load)."""
    up, down = AuthServer(), AuthServer()
    down.stop()
    try:
        yield up, down
    finally:
        up.stop()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, issuers: tuple[AuthServer, AuthServer]
) -> Iterator[tuple[ServiceProcess, str]]:
    up, down = issuers
    folder = tmp_path_factory.mktemp("dashboard")
    config = {
        "issuers": [
            {"issuer": up.issuer, "audience": AUDIENCE, "jwks_uri": up.jwks_uri},
            {"issuer": down.issuer, "audience": AUDIENCE, "jwks_uri": down.jwks_uri},
        ],
        "routes": [{"name": "beta", "path_prefix": "/beta", "mode": "report-only"}],
    }
    config_file = folder / "config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    metrics = f"127.0.0.1:{free_port()}"
    env = {"DPOP_METRICS_LISTEN": metrics, "DPOP_MEMORY_REPLAY_MAX_ENTRIES": "1"}
    process = ServiceProcess(config_file, env)
    try:
        yield process, metrics
    finally:
        process.stop()


def _rules_file(folder: Path) -> Path:
    """The chart's PrometheusRule, as a Prometheus rules file."""
    rule = chart.render(RULE_VALUES).one("PrometheusRule")
    path = folder / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, service: tuple[ServiceProcess, str]
) -> Iterator[Prometheus]:
    folder = tmp_path_factory.mktemp("prometheus")
    _, metrics = service
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_rules_file(folder))],
        "scrape_configs": [
            {
                # What a ServiceMonitor gives: job = the Service's name, the namespace label.
                "job_name": chart.FULLNAME,
                "static_configs": [
                    {"targets": [metrics], "labels": {"namespace": chart.NAMESPACE}}
                ],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_prometheus_binary(), f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        server.wait_for("readiness", lambda: _ready(server))
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ready(server: Prometheus) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"prometheus exited:\n{server.log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _traffic(service: ServiceProcess, issuers: tuple[AuthServer, AuthServer]) -> int:
    """One round of every kind of request the dashboard shows; returns how many were sent."""
    up, down = issuers
    client = generate_key("ES256")
    token = up.token(jkt=client.jkt, audience=AUDIENCE, client_id="orders-app")
    proof = make_proof(client, "GET", URL, access_token=token)
    dpop = {"method": "GET", "target_uri": URL, "authorization": [f"DPoP {token}"]}
    requests = [
        {**dpop, "dpop": [proof]},  # ok, then (the store holds 1 proof) replay_store_unavailable
        {**dpop, "dpop": [proof]},  # replayed, or again replay_store_unavailable
        {**dpop, "dpop": [make_proof(client, "GET", URL, access_token=token)]},  # store full
        {**dpop, "dpop": [make_proof(client, "GET", URL + "/x", access_token=token)]},
        {"method": "GET", "target_uri": BETA, "authorization": [f"Bearer {token}"]},  # would deny
    ]
    other = down.token(jkt=client.jkt, audience=AUDIENCE)
    requests.append(
        {**dpop, "authorization": [f"DPoP {other}"],
         "dpop": [make_proof(client, "GET", URL, access_token=other)]}
    )  # fmt: skip
    for fields in requests:
        service.verify(**fields)
    return len(requests)


def _scraped_total(prometheus: Prometheus) -> float:
    result = prometheus.query("sum(dpop_verifier_decisions_total)")
    return float(result[0]["value"][1]) if result else -1.0


@pytest.fixture(scope="module")
def scraped(
    service: tuple[ServiceProcess, str],
    issuers: tuple[AuthServer, AuthServer],
    prometheus: Prometheus,
) -> tuple[Prometheus, str]:
    """Two rounds of traffic, each seen by Prometheus, so that every rate has two samples."""
    process, metrics = service
    sent = 0
    for _ in range(2):
        sent += _traffic(process, issuers)
        prometheus.wait_for(
            f"{sent} decisions", lambda total=sent: _scraped_total(prometheus) >= total
        )
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as reply:
        text = reply.read().decode("utf-8")
    return prometheus, text


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"].replace("$namespace", ".*")
            metric = re.fullmatch(r"label_values\((\w+)(\{.*\})?, *(\w+)\)", query)
            assert metric, query
            queries.append(
                (f"variable {variable['name']}", f"count by ({metric[3]}) ({metric[1]})")
            )
    return queries


def _rule_exprs() -> list[tuple[str, str]]:
    rule = chart.render(RULE_VALUES).one("PrometheusRule")
    return [(r["alert"], r["expr"]) for r in rule["spec"]["groups"][0]["rules"]]


def test_every_metric_and_label_used_exists_on_the_service(scraped: tuple[Prometheus, str]) -> None:
    _, text = scraped
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    names = {s.name for s in samples}
    labels = {label for s in samples if s.name.startswith("dpop_verifier_") for label in s.labels}
    used = _dashboard_queries() + _rule_exprs()
    assert len(used) >= 20
    for where, expr in used:
        for metric in re.findall(r"\bdpop_verifier_\w+", expr):
            assert metric in names, f"{where}: {metric} is not served"
        grouped = re.findall(r"\b(?:by|on|ignoring)\s*\(([^)]*)\)", expr)
        matched = re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr)
        for label in [x.strip() for g in grouped for x in g.split(",") if x.strip()] + matched:
            assert label in labels | PROMETHEUS_LABELS, f"{where}: no metric has label {label}"


def test_every_dashboard_query_returns_data(scraped: tuple[Prometheus, str]) -> None:
    prometheus, _ = scraped
    empty = [
        f"{title}: {expr}" for title, expr in _dashboard_queries() if not prometheus.query(expr)
    ]
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_every_rule_evaluates_and_every_alert_trips(scraped: tuple[Prometheus, str]) -> None:
    prometheus, _ = scraped
    expected = {alert for alert, _ in _rule_exprs()}

    def tripped() -> set[str]:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        names = {a["labels"]["alertname"] for a in alerts if a["state"] in ("pending", "firing")}
        return names if names >= expected else set()

    prometheus.wait_for(f"the alerts {sorted(expected)} pending", tripped)
    groups = prometheus.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["name"] for r in rules} == expected
    for rule in rules:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule
    labels = {
        a["labels"]["alertname"]: a["labels"] for a in prometheus.get("/api/v1/alerts")["alerts"]
    }
    assert labels["DpopVerifierDenySpike"]["dpop_reason"]
    assert labels["DpopVerifierIssuerKeysStale"]["dpop_token_issuer"].startswith(
        "http://127.0.0.1:"
    )
