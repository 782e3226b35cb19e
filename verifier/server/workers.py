"""``DPOP_WORKERS`` / ``--workers N``: N server processes sharing the listening port, supervised.

With ``workers`` = 1 (the default, and what Kubernetes expects: scale pods, not processes) none
of this runs. With N > 1, ``dpop-verifier serve`` becomes a small supervisor that:

* resolves the listening ports first (port 0 becomes one concrete port) and keeps each bound,
  not listening, with ``SO_REUSEPORT``, so no other program can take it between workers;
* starts N children, each the ordinary ``python -m verifier serve`` with the concrete
  addresses and :data:`WORKER_ENV` in its environment; each binds the same main (and health)
  port with ``SO_REUSEPORT`` and the kernel spreads incoming connections over them;
* restarts a child that exits unexpectedly, after an exponential backoff; gives up (stops the
  others and exits non-zero) when the first start fails or a worker keeps failing at start-up;
* on SIGTERM / SIGINT, sends SIGTERM to every child (each drains as a single process would),
  and exits 0 once all have exited; a child still running ``shutdown_grace_seconds`` +
  :data:`STOP_MARGIN_SECONDS` later is killed (exit 1);
* on SIGHUP, replaces the children one at a time: a new child is started (reading the
  configuration afresh), and only once it listens is the old one sent SIGTERM, so the port
  never lacks a listener. A configuration that no longer loads, or a new child that fails to
  start, stops the roll and leaves the running children serving.

Why subprocesses (fork + exec of the same command) rather than ``multiprocessing`` or plain
``fork``: forking a process that has started gRPC is unsafe; a fresh interpreter reads the
configuration again, which is what SIGHUP is for; and a worker is exactly the process an
operator runs without workers, so there is one serve path to test.

Children die with the supervisor (``PR_SET_PDEATHSIG`` = SIGTERM on Linux, a parent watch
elsewhere). A child's log lines carry ``worker`` (its slot, 0..N-1) and ``pid``.

Metrics (``DPOP_METRICS_LISTEN`` host:P): Prometheus counters live in each process and one
HTTP port cannot be shared meaningfully (a scrape would see one random worker), so worker
``i`` serves its own metrics on port ``P + i``; scrape all N ports and ``sum()``. During a
rolling restart the new worker takes over its slot's port as soon as the old one has exited.
With port 0 each worker picks a port of its own (logged).
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from verifier.config import OPTIONS, ConfigError, Settings, load_settings

_log = logging.getLogger("verifier.workers")

WORKER_ENV = "DPOP_VERIFIER_WORKER"
"""Set by the supervisor only: ``<slot>:<supervisor pid>``. Not a setting."""
ANNOUNCEMENT = "dpop-verifier listening on "
"""The line a server prints on stdout once it listens (``verifier.server.main``)."""

START_TIMEOUT_SECONDS = 60.0
"""A child that has not announced it listens by then is killed (a failed start)."""
STOP_MARGIN_SECONDS = 5.0
"""Beyond ``shutdown_grace_seconds``, how long a stopping child may take before SIGKILL."""
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 30.0
"""A child that ran this long resets its slot's backoff."""
MAX_START_FAILURES = 5
"""Consecutive failed starts in one slot after which the supervisor gives up."""
METRICS_TAKEOVER_SECONDS = STOP_MARGIN_SECONDS
"""Beyond the grace period, how long a new worker waits for its slot's metrics port."""


# --- inside a worker ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Worker:
    """This process is worker ``slot`` of the supervisor ``supervisor_pid``."""

    slot: int
    supervisor_pid: int


def current_worker(environ: Mapping[str, str] | None = None) -> Worker | None:
    """The worker identity set by a supervisor, or None in a standalone process."""
    value = (os.environ if environ is None else environ).get(WORKER_ENV, "")
    slot, _, pid = value.partition(":")
    if not (slot.isdigit() and pid.isdigit()):
        return None
    return Worker(int(slot), int(pid))


def become_worker(worker: Worker) -> None:
    """Die with the supervisor, and label every log line with the worker slot and pid."""
    _die_with_parent(worker.supervisor_pid)
    label_logs(str(worker.slot))


def label_logs(worker: str) -> None:
    """Add ``worker`` and ``pid`` to every record of the root and decision log handlers
    (JSON lines get two fields; text lines a ``[worker W pid P]`` prefix)."""
    from verifier.telemetry.logs import DECISION_LOGGER, DecisionLineHandler, JsonFormatter

    def add_identity(record: logging.LogRecord) -> bool:
        record.worker = worker
        record.pid = record.process
        return True

    for logger in (logging.getLogger(), logging.getLogger(DECISION_LOGGER)):
        for handler in logger.handlers:
            if isinstance(handler, DecisionLineHandler):  # keeps its fast path (no filter)
                handler.set_identity({"worker": worker, "pid": os.getpid()})
                continue
            handler.addFilter(add_identity)
            if not isinstance(handler.formatter, JsonFormatter):
                handler.setFormatter(_PrefixFormatter(handler.formatter or logging.Formatter()))


class _PrefixFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"[worker {getattr(record, 'worker', '?')} pid {record.process}] " + (
            self._inner.format(record)
        )


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process (a graceful drain) when the supervisor dies.

    ``PR_SET_PDEATHSIG`` fires when the thread that started us exits: the supervisor starts
    children from its main thread only. Elsewhere than Linux a daemon thread polls the parent.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
        raise SystemExit("dpop-verifier worker: the supervisor has gone; exiting")
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def start_worker_metrics(start: Callable[[str], str], address: str, *, wait_seconds: float) -> None:
    """Start this worker's metrics endpoint with ``start(address)``, in the background.

    In a rolling restart the old worker of this slot holds the port until it has drained, so
    a busy port is retried for up to ``wait_seconds``, then given up with an error line (the
    worker keeps serving calls). The supervisor checked at start-up that the ports were free.
    """

    def keep_trying() -> None:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                start(address)
                return
            except RuntimeError as exc:
                if time.monotonic() > deadline:
                    _log.error("no metrics from this worker: %s", exc)
                    return
            time.sleep(0.2)

    threading.Thread(target=keep_trying, name="metrics-takeover", daemon=True).start()


# --- the supervisor -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Child:
    slot: int
    process: subprocess.Popen[str]
    started: float
    ready: bool = False
    retiring: bool = False
    """Asked to stop (rolling restart or shutdown): its exit is expected."""
    killed_at: float = 0.0

    def __str__(self) -> str:
        return f"worker {self.slot} (pid {self.process.pid})"


@dataclass
class _Slot:
    child: _Child | None = None
    restart_at: float | None = None
    start_failures: int = 0
    crashes: int = 0


@dataclass
class _Ports:
    main: str
    health: str = ""
    metrics_host: str = ""
    metrics_port: int = 0
    reservations: list[socket.socket] = field(default_factory=list)

    def metrics(self, slot: int) -> str:
        if not self.metrics_host:
            return ""
        port = self.metrics_port + slot if self.metrics_port else 0
        return f"{self.metrics_host}:{port}"

    def close(self) -> None:
        for sock in self.reservations:
            sock.close()


def supervise(settings: Settings, overrides: Mapping[str, object] | None = None) -> int:
    """Run ``settings.server.workers`` server processes until SIGTERM / SIGINT; return an exit code.

    ``overrides`` are the command-line settings, passed on to every child (and re-applied when
    SIGHUP re-reads the configuration).
    """
    return Supervisor(settings, overrides or {}).run()


class Supervisor:
    """Starts, watches, restarts and stops the worker processes (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        overrides: Mapping[str, object],
        *,
        command: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.command = command or [sys.executable, "-m", "verifier", "serve"]
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._slots = [_Slot() for _ in range(settings.server.workers)]
        self._children: set[_Child] = set()
        self._serving = False
        self._stopping_since: float | None = None
        self._exit_code: int | None = None
        self._rolling: list[int] = []
        self._replacement: _Child | None = None
        self._ports: _Ports | None = None

    # -- the loop

    def run(self) -> int:
        label_logs("supervisor")
        try:
            self._ports = _reserve_ports(self.settings)
        except (OSError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            _log.info(
                "starting %d workers on %s (SO_REUSEPORT); supervisor pid %d",
                len(self._slots),
                self._ports.main,
                os.getpid(),
            )
            for slot in range(len(self._slots)):
                self._start(slot)
            while self._children or self._exit_code is None:
                try:
                    event = self._events.get(timeout=0.1)
                except queue.Empty:
                    event = None
                if event is not None:
                    self._handle(*event)
                self._tick(time.monotonic())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in self._children:
                child.process.kill()
            self._ports.close()
        _log.info("supervisor exiting with code %d", self._exit_code)
        return self._exit_code

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._events.put(("signal", signum))  # SimpleQueue.put is safe in a signal handler

    def _handle(self, kind: str, subject: Any) -> None:
        if kind == "signal":
            self._on_signal_event(signal.Signals(subject))
        elif kind == "ready":
            self._on_ready(subject)
        elif kind == "exit":
            self._on_exit(subject)

    def _tick(self, now: float) -> None:
        if self._stopping_since is not None:
            deadline = self._stopping_since + self.settings.server.shutdown_grace_seconds
            if now > deadline + STOP_MARGIN_SECONDS:
                for child in self._children:
                    if not child.killed_at:
                        _log.error("%s did not stop in time: killing it", child)
                        child.killed_at = now
                        child.process.kill()
                        self._exit_code = 1
            return
        for child in self._children:
            if (
                not child.ready
                and not child.killed_at
                and now - child.started > START_TIMEOUT_SECONDS
            ):
                _log.error("%s did not listen within %ss: killing it", child, START_TIMEOUT_SECONDS)
                child.killed_at = now
                child.process.kill()
        for slot, state in enumerate(self._slots):
            if state.restart_at is not None and now >= state.restart_at:
                state.restart_at = None
                self._start(slot)

    # -- events

    def _on_signal_event(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            self._reload()
            return
        _log.info("received %s: stopping %d workers", sig.name, len(self._children))
        self._stop(0)

    def _on_ready(self, child: _Child) -> None:
        child.ready = True
        state = self._slots[child.slot]
        state.start_failures = 0
        if child.retiring:
            return
        _log.info("%s listening", child)
        if child is self._replacement:
            self._replacement = None
            old, state.child, state.restart_at = state.child, child, None
            if old is not None:
                self._retire(old)
            self._roll_next()
            return
        if not self._serving and all(s.child is not None and s.child.ready for s in self._slots):
            self._serving = True
            assert self._ports is not None
            _log.info("%d workers serving on %s", len(self._slots), self._ports.main)
            print(ANNOUNCEMENT + self._ports.main, flush=True)

    def _on_exit(self, child: _Child) -> None:
        self._children.discard(child)
        code = child.process.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        if child.retiring or self._stopping_since is not None:
            _log.info("%s %s", child, how)
            return
        if child is self._replacement:
            self._replacement = None
            self._rolling.clear()
            _log.error(
                "rolling restart stopped: the new %s %s before listening; the running workers "
                "keep serving",
                child,
                how,
            )
            return
        state = self._slots[child.slot]
        if state.child is child:
            state.child = None
        if not self._serving:
            _log.error("%s %s before listening: giving up (its error is above)", child, how)
            self._stop(code if code > 0 else 1)
            return
        if not child.ready:
            state.start_failures += 1
            if state.start_failures >= MAX_START_FAILURES:
                _log.error(
                    "%s %s before listening, %d times in a row: giving up",
                    child,
                    how,
                    state.start_failures,
                )
                self._stop(1)
                return
        now = time.monotonic()
        if now - child.started >= STABLE_SECONDS:
            state.crashes = 0
        delay = min(BACKOFF_FIRST_SECONDS * 2**state.crashes, BACKOFF_MAX_SECONDS)
        state.crashes += 1
        state.restart_at = now + delay
        _log.warning("%s %s: restarting it in %.1fs", child, how, delay)

    # -- actions

    def _start(self, slot: int, *, replacement: bool = False) -> _Child:
        process = subprocess.Popen(  # noqa: S603 -- our own command line, not input
            self.command,
            env=self._child_env(slot),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            process_group=0,  # a terminal's Ctrl-C reaches the supervisor only; it forwards
        )
        child = _Child(slot, process, time.monotonic())
        self._children.add(child)
        if replacement:
            self._replacement = child
        else:
            self._slots[slot].child = child
        threading.Thread(target=self._watch, args=(child,), daemon=True).start()
        _log.info("started %s", child)
        return child

    def _watch(self, child: _Child) -> None:
        """Reader thread: the child's announcement means it listens; EOF means it exited."""
        assert child.process.stdout is not None
        announced = False
        for line in child.process.stdout:
            if line.startswith(ANNOUNCEMENT) and not announced:
                announced = True
                self._events.put(("ready", child))
            else:
                sys.stdout.write(line)
        child.process.wait()
        self._events.put(("exit", child))

    def _child_env(self, slot: int) -> dict[str, str]:
        assert self._ports is not None
        env = dict(os.environ)
        # Command-line settings travel as variables: the next layer down, same precedence.
        env.update({_ENV_BY_NAME[name]: str(v) for name, v in self.overrides.items()})
        env["DPOP_LISTEN"] = self._ports.main
        if self._ports.health:
            env["DPOP_HEALTH_LISTEN"] = self._ports.health
        if self._ports.metrics_host:
            env["DPOP_METRICS_LISTEN"] = self._ports.metrics(slot)
        env[WORKER_ENV] = f"{slot}:{os.getpid()}"
        return env

    def _retire(self, child: _Child) -> None:
        child.retiring = True
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)

    def _stop(self, code: int) -> None:
        if self._exit_code is None:
            self._exit_code = code
        if self._stopping_since is not None:
            return
        self._stopping_since = time.monotonic()
        self._rolling.clear()
        for state in self._slots:
            state.restart_at = None
        for child in self._children:
            self._retire(child)

    def _reload(self) -> None:
        if self._stopping_since is not None:
            return
        if self._rolling or self._replacement is not None:
            _log.warning("received SIGHUP: a rolling restart is already in progress")
            return
        try:
            fresh = load_settings(self.overrides)
        except ConfigError as exc:
            _log.error("received SIGHUP: configuration error: %s; the workers keep running", exc)
            return
        for name in ("workers", "listen", "health_listen", "metrics_listen"):
            if fresh.value(name) != self.settings.value(name):
                _log.warning("received SIGHUP: %s changed; it takes a full restart", name)
        _log.info("received SIGHUP: restarting %d workers one at a time", len(self._slots))
        self._rolling = list(range(len(self._slots)))
        self._roll_next()

    def _roll_next(self) -> None:
        while self._rolling:
            slot = self._rolling.pop(0)
            if self._slots[slot].child is None:  # crashed; its restart reads the new config
                continue
            self._start(slot, replacement=True)
            return
        _log.info("rolling restart done")


_ENV_BY_NAME = {o.name: o.env for o in OPTIONS}


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _reserve_ports(settings: Settings) -> _Ports:
    """Resolve port 0 and hold the main and health ports; check the metrics ports are free."""
    ports = _Ports(main="")
    try:
        ports.main = _reserve(settings.server.listen, "DPOP_LISTEN", ports.reservations)
        if settings.server.health_listen:
            ports.health = _reserve(
                settings.server.health_listen, "DPOP_HEALTH_LISTEN", ports.reservations
            )
        if settings.server.metrics_listen:
            ports.metrics_host, ports.metrics_port = _split(settings.server.metrics_listen)
            for slot in range(settings.server.workers) if ports.metrics_port else ():
                _probe(ports.metrics(slot), "DPOP_METRICS_LISTEN", f" + {slot} (worker {slot})")
    except BaseException:
        ports.close()
        raise
    return ports


def _probe(address: str, setting: str, note: str = "") -> tuple[int, int, int, Any]:
    """Bind ``address`` without SO_REUSEPORT (so this fails if anything holds the port), free
    it again, and return how to bind it: family, type, protocol and the address, port resolved.
    """
    host, port = _split(address)
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            port = sock.getsockname()[1]
    except OSError as exc:
        raise RuntimeError(f"cannot listen on {address} ({setting}{note}): {exc}") from exc
    return family, kind, proto, (sockaddr[0], port, *sockaddr[2:])


def _reserve(address: str, setting: str, reservations: list[socket.socket]) -> str:
    """Hold ``address``'s port (port 0 resolved) bound with SO_REUSEPORT but not listening, so
    the workers can share it and nothing else can take it; return ``host:port``."""
    family, kind, proto, sockaddr = _probe(address, setting)
    sock = socket.socket(family, kind, proto)
    reservations.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        raise RuntimeError(f"cannot listen on {address} ({setting}): {exc}") from exc
    return f"{_split(address)[0]}:{sockaddr[1]}"
