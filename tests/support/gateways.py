"""Real NGINX and Caddy (Debian's packages) in front of an upstream, on loopback.

:func:`render_example` fills the placeholders of the repository's example configurations
(``examples/nginx/nginx.conf``, ``examples/caddy/Caddyfile``) and does nothing else: the tests
run those files as a user would after pasting them. :class:`GatewayProcess` starts one gateway
from its rendered example with the command the example's header gives, on a free port, and
stops it at the end.

The binaries come from ``make install-gateways``; when one is missing :func:`missing_gateway`
says so and the tests fail with that message (never a skip).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.http_requests import (
    HOST,
    Reply,
    assert_denied,
    dpop_headers,
    logged_decision,
    send,
)
from tests.support.net import free_port
from tests.support.service import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root."""
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Gateway:
    """How to run one gateway from its example."""

    name: str
    binary: str
    example: Path
    config_name: str
    """The name the filled-in file gets in the gateway's scratch folder."""


def run_command(config: str) -> list[str]:
    """The command the example's ``# Run:`` line gives (the tests start the gateway with it,
    in the folder holding the filled-in file)."""
    lines = [line for line in config.splitlines() if line.startswith("# Run: ")]
    if len(lines) != 1:
        raise ValueError(f"the example has {len(lines)} '# Run:' lines, not one")
    return shlex.split(lines[0].removeprefix("# Run: "))


NGINX = Gateway("nginx", "nginx", EXAMPLES / "nginx" / "nginx.conf", "nginx.conf")
CADDY = Gateway("caddy", "caddy", EXAMPLES / "caddy" / "Caddyfile", "Caddyfile")
GATEWAYS = {gateway.name: gateway for gateway in (NGINX, CADDY)}

PLACEHOLDERS = ("LISTEN_PORT", "APP_HOST", "APP_PORT", "VERIFIER_HOST", "VERIFIER_PORT", "PREFIX")


def missing_gateway(gateway: Gateway) -> str | None:
    """Why ``gateway`` cannot run here, or ``None`` when its binary is installed."""
    if _binary(gateway) is None:
        return (
            f"{gateway.binary} is not installed: run `make install-gateways` "
            f"(apt-get install nginx caddy); the gateway tests need the real proxy"
        )
    return None


def _binary(gateway: Gateway) -> str | None:
    # Debian installs nginx in /usr/sbin, which a non-root PATH may lack.
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/usr/bin"
    return shutil.which(gateway.binary, path=path)


def render_example(template: Path, values: Mapping[str, str]) -> str:
    """The example file with every ``${NAME}`` of ``values`` replaced, nothing else changed.

    Raises ``ValueError`` when a placeholder is left outside comments, or a name in ``values``
    is not one of :data:`PLACEHOLDERS`.
    """
    unknown = set(values) - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"not a placeholder of the examples: {sorted(unknown)}")
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    body = "\n".join(line.partition("#")[0] for line in text.splitlines())
    if "${" in body:
        raise ValueError(f"unfilled placeholder in {template.name}")
    return text


class GatewayProcess:
    """One gateway running its rendered example, in front of ``app``, asking ``verifier``
    (the forward-auth listener's ``host:port``).

    The port is chosen free just before the start; a start that loses the port to another
    process (or fails for another reason) is tried again, up to ``attempts`` times, and the
    failures are kept in :attr:`start_failures`.
    """

    def __init__(
        self,
        gateway: Gateway,
        verifier: str,
        app: tuple[str, int],
        *,
        start_timeout: float = 20.0,
        attempts: int = 3,
    ) -> None:
        problem = missing_gateway(gateway)
        if problem is not None:
            raise RuntimeError(problem)
        self.gateway = gateway
        self._dir = tempfile.TemporaryDirectory(prefix=f"{gateway.name}-")
        self.prefix = Path(self._dir.name)
        # NGINX started as root runs its worker as nobody, which must reach the folder.
        self.prefix.chmod(0o755)
        verifier_host, _, verifier_port = verifier.rpartition(":")
        self.start_failures: list[str] = []
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            self.config = render_example(
                gateway.example,
                {
                    "LISTEN_PORT": str(self.port),
                    "APP_HOST": app[0],
                    "APP_PORT": str(app[1]),
                    "VERIFIER_HOST": verifier_host.strip("[]"),
                    "VERIFIER_PORT": verifier_port,
                    "PREFIX": str(self.prefix),
                },
            )
            (self.prefix / gateway.config_name).write_text(self.config, encoding="utf-8")
            self._launch(attempt)
            try:
                self._await_listener(start_timeout)
                return
            except RuntimeError as exc:
                self.start_failures.append(str(exc))
                self._stop_process()
            except BaseException:
                self.close()
                raise
        self.close()
        raise RuntimeError(f"{gateway.name} did not start:\n" + "\n---\n".join(self.start_failures))

    def _launch(self, attempt: int) -> None:
        binary = _binary(self.gateway)
        command = run_command(self.config)
        if command[0] != self.gateway.binary or binary is None:
            raise ValueError(f"the example runs {command[0]!r}, not {self.gateway.binary!r}")
        self._log_file = self.prefix / f"{self.gateway.name}-{attempt}.log"
        env = dict(os.environ)
        # Caddy keeps its own state under XDG folders (autosaved config, data): keep them here.
        env.update(
            HOME=str(self.prefix),
            XDG_CONFIG_HOME=str(self.prefix / "config"),
            XDG_DATA_HOME=str(self.prefix / "data"),
        )
        with self._log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [*_die_with_parent(), binary, *command[1:]],
                cwd=self.prefix,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def _await_listener(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.gateway.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.gateway.name} never listened on {self.port}:\n{self.log()}")

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect."""
        return ("127.0.0.1", self.port)

    def log(self) -> str:
        """The end of the gateway's own log (stderr and stdout)."""
        with contextlib.suppress(OSError):
            return self._log_file.read_text(encoding="utf-8", errors="replace")[-4000:]
        return ""

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _stop_process(self) -> None:
        process = getattr(self, "process", None)
        if process is None or process.poll() is not None:
            return
        process.terminate()  # NGINX: fast shutdown of master and workers; Caddy: graceful stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self._stop_process()
        self._dir.cleanup()


def _die_with_parent() -> list[str]:
    """A command prefix that kills the gateway when the test process dies (no orphans); see
    :func:`tests.support.envoy._die_with_parent`. SIGTERM, so that NGINX's
    master stops its workers too."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def decision_of(trace_id: str, service: ServiceProcess) -> dict[str, Any]:
    """The decision the service logged for the forward-auth request marked ``trace_id``."""
    return logged_decision(trace_id, "forward_auth", service)


__all__ = [
    "HOST", "Gateway", "GatewayProcess", "Reply", "assert_denied", "decision_of", "dpop_headers",
    "missing_gateway", "render_example", "run_command", "send",
]  # fmt: skip
