"""A real, throwaway ``redis-server`` on loopback, for adapter and end-to-end tests."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.net import free_port

_START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RedisTls:
    """PEM files for a TLS-only server: its certificate and the CA that signs client certs."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path
    require_client_cert: bool = True


@dataclass(frozen=True)
class SentinelMonitor:
    """Makes a :class:`RedisServer` a sentinel watching one master (short, test-sized timers)."""

    master_port: int
    name: str = "mymaster"
    quorum: int = 2
    down_after_ms: int = 1000
    """Not lower: on a busy machine a healthy, just-promoted master can miss a few hundred ms of
    PINGs, and the sentinels then fail over a second time."""
    failover_timeout_ms: int = 4000


class RedisServerNotInstalled(RuntimeError):
    """``redis-server`` (or ``redis-cli``) is not on PATH."""


def missing_redis_binaries() -> str | None:
    """Why the Redis binaries cannot be used, or None when both are on PATH."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return (
            "redis-server and redis-cli must be on PATH for these tests; "
            "run `make install-test-deps` (apt-get install redis-server redis-tools)"
        )
    return None


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, without persistence, in a temp dir.

    Use it as a context manager (or call :meth:`start` and :meth:`close`); leaving the
    ``with`` block kills the process and removes the directory whatever happened. The process
    also gets SIGKILL if the thread that started it dies (Linux ``PR_SET_PDEATHSIG``), so a
    killed test run leaves no orphan: start it from the main thread.

    The port is chosen once and kept by :meth:`restart`, so clients can reconnect to
    :attr:`url`. ``options`` adds ``--name value`` options (``replicaof``, ``cluster-enabled``,
    ...); ``tls`` serves TLS only on the port; ``sentinel`` runs a sentinel instead.
    """

    def __init__(
        self,
        *,
        start_timeout_s: float = 10.0,
        options: Mapping[str, str] | None = None,
        tls: RedisTls | None = None,
        sentinel: SentinelMonitor | None = None,
        password: str | None = None,
    ) -> None:
        problem = missing_redis_binaries()
        if problem is not None:
            raise RedisServerNotInstalled(problem)
        self._start_timeout_s = start_timeout_s
        self._options = dict(options or {})
        self.password = password
        """``requirepass`` (and, for a sentinel, the password it gives its peers)."""
        if password is not None:
            self._options["requirepass"] = password
        self.tls = tls
        self._sentinel = sentinel
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The TCP port (fixed at the first start)."""
        if self._port is None:
            raise RuntimeError("redis-server was never started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (``rediss://`` with TLS)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def workdir(self) -> Path:
        """The server's directory (holds ``redis.log``)."""
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="redis-test-")
        return Path(self._tempdir.name)

    def start(self) -> None:
        """Start the server and wait until it answers PING.

        The first start picks a free port, retrying with another one if it was taken
        meanwhile; later starts reuse it.
        """
        if self.is_running():
            raise RuntimeError("redis-server is already running")
        attempts = _START_ATTEMPTS if self._port is None else 1
        for attempt in range(attempts):
            port = self._port if self._port is not None else free_port()
            if self._try_start(port):
                self._port = port
                return
            if attempt + 1 == attempts:
                raise RuntimeError(
                    f"redis-server did not start on port {port}:\n{self._log_tail()}"
                )

    def is_running(self) -> bool:
        """True while the process exists (even if paused)."""
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Shut the server down cleanly (SIGTERM), killing it if it takes too long."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> None:
        """Stop the server if it runs, then start a fresh one (empty) on the same port."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, but nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a paused server (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def cli(self, *args: str, timeout_s: float = 10.0) -> str:
        """Run ``redis-cli`` against the server; its stdout, stripped."""
        tls_args: list[str] = []
        if self.tls is not None:
            tls_args = ["--tls", "--cacert", str(self.tls.ca_file)]
            tls_args += ["--cert", str(self.tls.client_cert_file)]
            tls_args += ["--key", str(self.tls.client_key_file)]
        if self.password is not None:
            tls_args += ["-a", self.password, "--no-auth-warning"]
        completed = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *tls_args, *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
        return completed.stdout.strip()

    def close(self) -> None:
        """Kill the server and remove its directory. Safe to call more than once."""
        self.kill()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def _signal(self, signum: signal.Signals) -> None:
        if not self.is_running():
            raise RuntimeError("redis-server is not running")
        assert self._process is not None
        self._process.send_signal(signum)

    def _try_start(self, port: int) -> bool:
        log_path = self.workdir / "redis.log"
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                ["redis-server", *self._arguments(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _answers_ping(port, self.tls):
                return True
            time.sleep(0.01)
        self.kill()
        return False

    def _arguments(self, port: int) -> list[str]:
        options = _server_options(port, self.workdir)
        if self.tls is not None:
            options += ["--port", "0", "--tls-port", str(port)]
            options += ["--tls-cert-file", str(self.tls.cert_file)]
            options += ["--tls-key-file", str(self.tls.key_file)]
            options += ["--tls-ca-cert-file", str(self.tls.ca_file)]
            options += ["--tls-auth-clients", "yes" if self.tls.require_client_cert else "no"]
        for name, value in self._options.items():
            options += [f"--{name}", *value.split(" ")]
        if self._sentinel is None:
            return options
        # A sentinel rewrites its config file, so it must have one.
        monitor = self._sentinel
        name = monitor.name
        config = self.workdir / "sentinel.conf"
        config.write_text(
            f"sentinel monitor {name} 127.0.0.1 {monitor.master_port} {monitor.quorum}\n"
            f"sentinel down-after-milliseconds {name} {monitor.down_after_ms}\n"
            f"sentinel failover-timeout {name} {monitor.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {name} 1\n"
            # Sentinels ask each other (failover votes) with the password they require.
            + (f"sentinel sentinel-pass {self.password}\n" if self.password is not None else ""),
            encoding="utf-8",
        )
        return [str(config), "--sentinel", *options]

    def _log_tail(self, lines: int = 20) -> str:
        log_path = self.workdir / "redis.log"
        if not log_path.exists():
            return "(no log)"
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _server_options(port: int, workdir: Path) -> list[str]:
    """Loopback only, no persistence, in the foreground."""
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "save": "",
        "appendonly": "no",
        "dir": str(workdir),
        "daemonize": "no",
    }
    return [arg for name, value in options.items() for arg in (f"--{name}", value)]


def _answers_ping(port: int, tls: RedisTls | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            if tls is None:
                return _ping(raw)
            context = ssl.create_default_context(cafile=str(tls.ca_file))
            context.load_cert_chain(str(tls.client_cert_file), str(tls.client_key_file))
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
                return _ping(wrapped)
    except OSError:
        return False


def _ping(sock: socket.socket) -> bool:
    """The server answers (a password-protected one asks for it first)."""
    sock.sendall(b"PING\r\n")
    return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when its parent thread exits."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
