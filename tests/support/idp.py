"""A real authorization server and DPoP client from npm, driven from Python.

``tests/idp/node/harness.mjs`` runs panva's ``oidc-provider`` (the AS) and ``openid-client``
(the client library) in one Node process: tokens are issued by the AS, and the proofs and
``Authorization`` headers sent to the protected API are built by the library. The Python side
sends one JSON command a line on stdin and reads one JSON answer a line on stdout (see the
harness for the commands). The versions are pinned by ``tests/idp/node/package-lock.json``;
``make install-idp-deps`` installs them.
"""

from __future__ import annotations

import base64
import itertools
import json
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.envoy import _die_with_parent

ROOT = Path(__file__).resolve().parents[2]
HARNESS_DIR = ROOT / "tests" / "idp" / "node"
ORDERS = "urn:dpop-verifier:orders"
BILLING = "urn:dpop-verifier:billing"
OTHER = "urn:dpop-verifier:other"


def missing_idp_dependencies() -> str | None:
    """Why the harness cannot run here (None: it can)."""
    if shutil.which("node") is None:
        return "node is not installed; run `make install-idp-deps` (Debian's nodejs)"
    for package in ("oidc-provider", "openid-client"):
        if not (HARNESS_DIR / "node_modules" / package / "package.json").is_file():
            return f"npm package {package} is missing; run `make install-idp-deps`"
    return None


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decoded header and payload of a compact JWS (no verification: for assertions)."""

    def decode(part: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return value

    header, payload, _ = token.split(".")
    return decode(header), decode(payload)


class IdpHarness:
    """One harness process: :attr:`issuer` is the AS, :meth:`call` runs a command."""

    def __init__(self, *, start_timeout: float = 60.0) -> None:
        problem = missing_idp_dependencies()
        if problem is not None:
            raise RuntimeError(problem)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.process = subprocess.Popen(
            [*_die_with_parent(), "node", str(HARNESS_DIR / "harness.mjs")],
            cwd=HARNESS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        ready = self._next(start_timeout)
        if not ready.get("ready"):
            self.close()
            raise RuntimeError(f"the IdP harness did not start: {ready}\n{self.log()}")
        self.issuer: str = ready["issuer"]
        self.verifier_client_id: str = ready["verifier_client_id"]
        self.verifier_secret: str = ready["verifier_secret"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(
                f"the IdP harness did not answer in {timeout} s\n{self.log()}"
            ) from None
        if line is None:
            raise RuntimeError(f"the IdP harness exited\n{self.log()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, op: str, *, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Run one command; raise if the harness reports a failure (``ok`` false)."""
        with self._lock:
            command_id = next(self._ids)
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"id": command_id, "op": op, **fields}) + "\n")
            self.process.stdin.flush()
            answer = self._next(timeout)
        assert answer.get("id") == command_id, answer
        if not answer.get("ok"):
            raise RuntimeError(f"{op} failed: {answer.get('error')}")
        return answer

    def requests(self) -> list[tuple[str, str]]:
        """Every HTTP request the AS has received, in order: (method, path)."""
        return [(method, path) for method, path in self.call("requests")["requests"]]

    def count(self, method: str, path: str) -> int:
        return sum(1 for seen in self.requests() if seen == (method, path))

    def log(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-4000:]

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()

    def __enter__(self) -> IdpHarness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
