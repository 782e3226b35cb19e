"""``dpop-verifier explain``: the real command, run as an operator would, with a config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from tests.support.redis_server import RedisServer
from tests.support.service import AUDIENCE, TestIssuer
from verifier.cli.mint import generate_key, make_proof

URL = "https://api.test/orders"


def _explain(
    config: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verifier", "explain", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={k: v for k, v in os.environ.items() if not k.startswith(("DPOP_", "OTEL_"))},
    )


def _config(tmp_path: Path, issuer: TestIssuer, **extra: Any) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(issuer.config(**extra)), encoding="utf-8")
    return path


def _checks(stdout: str) -> list[tuple[str, str]]:
    lines = stdout.split("checks:\n", 1)[1].splitlines()
    return [(line.split()[0], line.split()[1]) for line in lines if line.startswith("  ")]


def test_explain_prints_every_check_and_never_writes_the_configured_store(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    issuer, client = TestIssuer(tmp_path), generate_key("ES256")
    config = _config(tmp_path, issuer, replay_url=redis_server.url)
    token = issuer.token(client)
    (tmp_path / "token").write_text(token, encoding="utf-8")
    proof = make_proof(client, "GET", URL, access_token=token)

    for _ in range(2):  # the same proof twice: explained, not consumed
        result = _explain(config, "--token", f"@{tmp_path / 'token'}", "--proof", "-", "--url", URL,
                          stdin=proof + "\n")  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("decision:          ALLOW (ok)")
        assert _checks(result.stdout) == [
            ("pass", name)
            for name in (
                "request", "authorization", "proof.header_count", "proof.syntax", "proof.header",
                "proof.jwk", "proof.signature", "proof.claims", "proof.ath", "token",
                "token.cnf.jkt", "replay",
            )
        ]  # fmt: skip
    assert redis.Redis.from_url(redis_server.url).dbsize() == 0


def test_explain_shows_the_failed_check_and_exits_1(tmp_path: Path) -> None:
    issuer, client = TestIssuer(tmp_path), generate_key("ES256")
    token = issuer.token(generate_key("ES256"))  # bound to another key
    proof = make_proof(client, "GET", URL, access_token=token)
    result = _explain(_config(tmp_path, issuer), "--token", token, "--proof", proof, "--url", URL,
                      "--json")  # fmt: skip
    assert result.returncode == 1
    output = json.loads(result.stdout)
    assert (output["decision"], output["reason"]) == ("deny", "jkt_mismatch")
    assert output["checks"][-1] == {"name": "token.cnf.jkt", "passed": False,
                                    "note": "jkt_mismatch"}  # fmt: skip
    assert output["rfc_error"] == "invalid_token"


def test_explain_at_replays_a_past_moment(tmp_path: Path) -> None:
    issuer, client = TestIssuer(tmp_path), generate_key("ES256")
    then = time.time() - 3600
    token = issuer.token(client, now=then, audience=AUDIENCE)
    proof = make_proof(client, "GET", URL, access_token=token, iat=then)
    config = _config(tmp_path, issuer)
    now_result = _explain(config, "--token", token, "--proof", proof, "--url", URL)
    assert now_result.returncode == 1 and "FAIL" in now_result.stdout
    assert now_result.stdout.startswith("decision:          DENY (proof_iat_too_old)")
    at_result = _explain(config, "--token", token, "--proof", proof, "--url", URL,
                         "--at", str(then + 1))  # fmt: skip
    assert at_result.returncode == 0, at_result.stdout


def test_explain_with_a_bad_config_names_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"replay_timeout_ms": 0}), encoding="utf-8")
    result = _explain(bad, "--url", URL)
    assert result.returncode == 2 and "DPOP_REPLAY_TIMEOUT_MS" in result.stderr


def test_explain_applies_the_configured_route_policy(tmp_path: Path) -> None:
    issuer = TestIssuer(tmp_path)
    config = _config(tmp_path, issuer, routes=[
        {"path_prefix": "/public", "mode": "allow-bearer", "name": "public"}])  # fmt: skip
    bearer = issuer.token(None)  # not DPoP-bound
    public = _explain(config, "--scheme", "Bearer", "--token", bearer, "--url",
                      "https://api.test/public/items")  # fmt: skip
    assert public.returncode == 0, public.stdout
    assert "route:             public (allow-bearer)" in public.stdout
    private = _explain(config, "--scheme", "Bearer", "--token", bearer, "--url", URL)
    assert private.returncode == 1
    assert private.stdout.startswith("decision:          DENY (bearer_not_allowed)")
