"""Processes of ``bench/run.py``: servers pinned to cores with ``taskset``, their CPU and RSS.

A server announces its address with one stdout line ending in ``HOST:PORT`` (``dpop-verifier
listening on ...``, ``null server listening on ...``, ``otlp sink listening on ...``); its
stderr goes to a log file, so nothing in the load generator reads it while measuring.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``DPOP_*`` / ``OTEL_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOP_", "OTEL_"))}
    env.update(extra)
    return env


def cores_text(cores: Sequence[int]) -> str:
    return ",".join(str(c) for c in cores)


class PinnedServer:
    """One server process started under ``taskset -c CORES``."""

    def __init__(
        self,
        argv: Sequence[str],
        cores: Sequence[int],
        env: Mapping[str, str],
        log_file: Path,
        *,
        announce: str,
        start_timeout: float = 30.0,
    ) -> None:
        if shutil.which("taskset") is None or shutil.which("setpriv") is None:
            raise RuntimeError("taskset and setpriv (util-linux) are needed to pin the servers")
        self.cores = tuple(cores)
        self.connections = 1
        """HTTP/2 connections the load generator opens to it (SO_REUSEPORT spreads connections,
        not calls, over worker processes)."""
        self.log_file = log_file
        self._log = log_file.open("ab")
        self.process = subprocess.Popen(
            # SIGKILL when this process dies, so a killed run leaves no server behind.
            ["setpriv", "--pdeathsig", "KILL", "taskset", "-c", cores_text(cores), *argv],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self.preamble: list[str] = []
        """Lines printed on stdout before the announcement."""
        self.address = self._await_address(announce, start_timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _await_address(self, announce: str, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith(announce):
                return line.split()[-1]
            self.preamble.append(line.rstrip("\n"))
            if not line and self.process.poll() is not None:
                break
        self.stop()
        tail = self.log_file.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{announce!r} never came:\n" + "\n".join(tail))

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and of its live children (``DPOP_WORKERS``)."""
        return sum(process_cpu_seconds(pid) for pid in (self.pid, *_children(self.pid)))

    def rss_bytes(self) -> int:
        """Resident memory (``VmRSS``) of the process and of its live children."""
        return sum(_rss_bytes(pid) for pid in (self.pid, *_children(self.pid)))

    def stop(self) -> str:
        """SIGTERM, then SIGKILL after 15 s; returns what the process printed on stdout after
        its announcement (the OTLP sink prints its span count there)."""
        output = ""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                output, _ = self.process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return output or ""


@dataclass
class CpuUse:
    """CPU used during a window, in cores: by the server, and by anything else on its cores
    (other processes, interrupts and the kernel's loopback network work)."""

    server: float = 0.0
    others: float = 0.0


@contextmanager
def cpu_use(server: PinnedServer) -> Iterator[CpuUse]:
    """Measures :class:`CpuUse` of ``server`` over the ``with`` block."""
    use = CpuUse()
    own0, busy0, started = server.cpu_seconds(), busy_seconds(server.cores), time.perf_counter()
    yield use
    elapsed = time.perf_counter() - started
    own = server.cpu_seconds() - own0
    use.server = own / elapsed
    use.others = max(0.0, busy_seconds(server.cores) - busy0 - own) / elapsed


def busy_seconds(cores: Sequence[int]) -> float:
    """Non-idle time of ``cores`` since boot (``/proc/stat``)."""
    wanted = {f"cpu{core}" for core in cores}
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name in wanted:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks) - ticks[3] - ticks[4]
    return total / CLOCK_TICKS


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry))
    return found


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process has used, all its threads; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
