"""Credentials never need to be on a command line: the service refuses a password in
``--replay-url`` (every user can read the process list), and the dev CLI reads tokens and proofs
from a file (``@file``) or stdin (``-``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.service import TestIssuer, running_service
from verifier.cli.mint import generate_key, make_proof

URL = "https://api.test/orders"


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verifier", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_a_password_in_the_replay_url_flag() -> None:
    done = run_cli(
        "serve", "--listen", "127.0.0.1:0", "--replay-url", "redis://:s3cret@127.0.0.1:1/0"
    )
    assert done.returncode == 2
    assert "--replay-url carries a password" in done.stderr
    assert "DPOP_REDIS_PASSWORD_FILE" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert "listening" not in done.stdout


def test_a_username_without_password_in_the_flag_is_fine(tmp_path: Path) -> None:
    # Only the password is a secret; the service starts (and is stopped by the timeout check).
    config = tmp_path / "c.json"
    config.write_text("{}", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "verifier", "serve", "--listen", "127.0.0.1:0",
         "--replay-url", "redis://dpop@127.0.0.1:1/0", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("dpop-verifier listening on")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_call_reads_the_token_from_a_file_and_the_proof_from_stdin(tmp_path: Path) -> None:
    issuer = TestIssuer(tmp_path)
    client = generate_key("ES256")
    token = issuer.token(client)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n", encoding="utf-8")
    proof = make_proof(client, "GET", URL, access_token=token)
    with running_service(tmp_path, issuer) as service:
        done = run_cli(
            "call", "--target", service.address, "--url", URL,
            "--token", f"@{token_file}", "--proof", "-", "--json",
            stdin=proof + "\n",
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ok"' in done.stdout


def test_proof_reads_the_token_from_stdin(tmp_path: Path) -> None:
    issuer = TestIssuer(tmp_path)
    client = generate_key("ES256")
    key_file = tmp_path / "client.jwk"
    key_file.write_text(json.dumps(client.private_jwk()), encoding="utf-8")
    token = issuer.token(client)
    done = run_cli("proof", "--key", str(key_file), "--method", "GET", "--url", URL,
                   "--token", "-", stdin=token + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(".") == 2  # one compact JWS
