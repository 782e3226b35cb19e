"""Shell blocks of the docs that a reader pastes, found and run as pasted.

A fenced ``sh`` or ``console`` block preceded by an HTML comment ``<!-- runnable -->`` is run;
options after a colon: ``background`` (a server: started and left running, ready once it prints
``dpop-verifier listening on``) and ``expect "TEXT"`` (its output must contain TEXT). A
``console`` block is a transcript: each ``$ `` command (``\\`` continues it) is run and its
standard output compared with the lines that follow, ``...`` matching anything (doctest's
ELLIPSIS); trailing spaces are ignored.

``python -m tests.docs.runnable PLAN.json`` runs the blocks of a plan in order in a new network
namespace's loopback (the caller starts it under ``unshare``) and prints the results as JSON;
tests/docs/test_runnable_docs.py prepares the plan and judges the results.
"""

from __future__ import annotations

import doctest
import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = re.compile(r"<!--\s*runnable(?::\s*(?P<options>.*?))?\s*-->")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")
EXPECT = re.compile(r'expect\s+"(?P<text>[^"]*)"')
READY = "dpop-verifier listening on "
BACKGROUND_START_SECONDS = 600.0  # a first `make run` installs; generous, it is a hang guard
COMMAND_SECONDS = 120.0


@dataclass
class Block:
    """One fenced block of a Markdown file."""

    source: str
    """``file:line`` of the opening fence."""
    section: str
    """The ``##`` heading above it."""
    lang: str
    text: str
    runnable: bool = False
    background: bool = False
    expect: list[str] = field(default_factory=list)


def blocks(path: Path, root: Path) -> list[Block]:
    """Every fenced block of the Markdown file ``path``, marked runnable or not."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    section, marker, i = "", None, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if match := MARKER.search(line):
            marker = match["options"] or ""
        elif fence := FENCE.match(line):
            start, i = i, i + 1
            while i < len(lines) and lines[i].rstrip() != "```":
                i += 1
            text = "\n".join(lines[start + 1 : i]) + "\n"
            block = Block(f"{path.relative_to(root)}:{start + 1}", section, fence["lang"], text)
            if marker is not None:
                block.runnable = True
                block.background = "background" in marker.split()
                block.expect = [m["text"] for m in EXPECT.finditer(marker)]
            found.append(block)
            marker = None
        elif line.strip() and marker is not None and not line.lstrip().startswith("<!--"):
            marker = None  # a marker applies to the next block only, with nothing between
        i += 1
    return found


def console_steps(text: str) -> list[tuple[str, str]]:
    """The ``(command, expected output)`` pairs of a console transcript."""
    steps: list[tuple[str, list[str]]] = []
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + " " + next(lines).strip()
            steps.append((command, []))
        elif steps:
            steps[-1][1].append(line)
    return [(command, "\n".join(out).strip("\n") + "\n") for command, out in steps]


def output_matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is ``expected`` with each ``...`` standing for anything."""
    want = "\n".join(line.rstrip() for line in expected.strip("\n").splitlines()) + "\n"
    got = "\n".join(line.rstrip() for line in actual.strip("\n").splitlines()) + "\n"
    return doctest.OutputChecker().check_output(want, got, doctest.ELLIPSIS)


# --- running, inside the network namespace -------------------------------------------------------


def loopback_up() -> None:
    """Bring ``lo`` up (a new network namespace starts with it down), without iproute2."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, siocgifflags, request)[:18])[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def _bash(script: str, cwd: str, env: dict[str, str], scratch: Path) -> dict[str, Any]:
    """Run ``script`` in bash (``-e -o pipefail``: every line must work) in its own process
    group; whatever it leaves running is killed and reported."""
    out, err = scratch / "stdout", scratch / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=cwd, env=env, stdout=stdout, stderr=stderr, start_new_session=True,
        )  # fmt: skip
        try:
            status: int | str = process.wait(timeout=COMMAND_SECONDS)
        except subprocess.TimeoutExpired:
            status = f"still running after {COMMAND_SECONDS:.0f} s"
    # What it started and stopped may still be shutting down (a server drains): wait a little.
    left_running = not _group_gone(process.pid, 15) and _kill_group(process.pid)
    process.wait()
    return {
        "stdout": out.read_text(errors="replace"),
        "stderr": err.read_text(errors="replace"),
        "status": status,
        "left_running": left_running,
    }


def run_plan(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Run each block of ``plan`` in order; background blocks are stopped at the end with
    SIGINT (a Ctrl-C) and their exit status reported."""
    cwd, env, scratch = plan["cwd"], plan["env"], Path(plan["scratch"])
    results: list[dict[str, Any]] = []
    servers: list[tuple[dict[str, Any], subprocess.Popen[bytes], Path]] = []
    try:
        for block in plan["blocks"]:
            result: dict[str, Any] = {"source": block["source"]}
            results.append(result)
            if block["background"]:
                log = scratch / f"background-{len(servers)}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        ["bash", "-c", block["text"]],
                        cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
                servers.append((result, process, log))
                result["ready"] = _await_ready(process, log)
                result["output"] = log.read_text(errors="replace")
                if not result["ready"]:
                    break
            elif block["lang"] == "console":
                result["steps"] = [
                    {"command": command, "expected": expected, **_bash(command, cwd, env, scratch)}
                    for command, expected in console_steps(block["text"])
                ]
            else:
                result.update(_bash(block["text"], cwd, env, scratch))
    finally:
        for result, process, log in servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, to every process of the group
                try:
                    result["stopped"] = process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    result["stopped"] = "still running 30 s after Ctrl-C"
            result["left_running"] = not _group_gone(process.pid, 30) and _kill_group(process.pid)
            result["output"] = log.read_text(errors="replace")
    return results


def _await_ready(process: subprocess.Popen[bytes], log: Path) -> bool:
    deadline = time.monotonic() + BACKGROUND_START_SECONDS
    while time.monotonic() < deadline:
        if READY in log.read_text(errors="replace"):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def _group_gone(group: int, seconds: float) -> bool:
    """Whether every process of ``group`` ends within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _kill_group(group: int) -> bool:
    """Kill what is left of process group ``group``; whether anything was."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    loopback_up()
    json.dump(run_plan(plan), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
