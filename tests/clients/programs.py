"""Waiting for a program the client tests started (the README snippets) to listen."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; fail if ``process`` exits first."""
    deadline = time.monotonic() + 60  # a hang guard
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"the program exited: {stderr}", pytrace=False)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("the program never listened", pytrace=False)
