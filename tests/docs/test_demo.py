"""``make demo`` works: Envoy from the wheel, the verifier and an API on loopback, and every step
gives the answer it shows (the demo checks each one itself and exits 1 otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent  # the virtualenv running the tests (.venv, .venv-3.12)


def test_make_demo_shows_allow_replay_downgrade_nonce_explain_and_rollout() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOP_", "OTEL_", "MAKE"))}
    done = subprocess.run(
        ["make", "--no-print-directory", "demo", f"VENV={VENV}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out[-6000:] + done.stderr[-3000:]
    steps = [
        ('$ curl -si "$GW/orders" -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF"', ""),
        ("HTTP/1.1 200 OK", "  the API received x-auth-client-id: orders-app"),
        ("-> decision log: allow ok", ""),
        ("-> decision log: deny replayed", 'error_description="DPoP proof replayed"'),
        ("-> decision log: deny token_bound_sent_as_bearer", ""),
        ("-> decision log: deny nonce_required", "dpop-nonce: "),
        (
            "-> decision log: deny proof_htu_mismatch",
            "FAIL  proof.claims         proof_htu_mismatch",
        ),
        ("x-dpop-report-only: token_bound_sent_as_bearer", "route beta (report-only): 1 request"),
        ("Every step gave the answer shown.", ""),
    ]
    for shown, also in steps:
        assert shown in out, f"{shown!r} missing from the demo:\n{out[-6000:]}"
        assert also in out
    # The nonce retry was allowed: two allows in all (orders, nonce/orders).
    assert out.count("-> decision log: allow ok") == 2
