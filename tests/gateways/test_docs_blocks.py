"""The commands docs/gateways.md tells a user to paste, run as they are.

Every shell block marked ``<!-- runnable -->`` is run with ``bash`` from the repository's root,
with the placeholders of this run in the environment (as the doc's ``export`` line sets them),
and a DPoP request goes through the gateway it starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.envoy import EchoUpstream
from tests.support.gateways import (
    GATEWAYS,
    ROOT,
    dpop_headers,
    missing_gateway,
    send,
)
from tests.support.net import free_port
from tests.support.service import ServiceProcess, TestIssuer
from verifier.cli.mint import generate_key

DOC = ROOT / "docs" / "gateways.md"


def runnable_blocks() -> list[str]:
    return re.findall(r"<!-- runnable -->\n```sh\n(.*?)```", DOC.read_text("utf-8"), re.S)


@contextlib.contextmanager
def running_block(block: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``block`` run by bash in its own process group, ended (the whole group) afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-euc", block], cwd=ROOT, env=env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def await_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the block exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on {port}:\n{log.read_text()}")


def test_the_doc_has_one_runnable_block_per_gateway() -> None:
    blocks = runnable_blocks()
    for name in GATEWAYS:
        assert len([b for b in blocks if f"examples/{name}/" in b]) == 1, name
    assert len(blocks) == len(GATEWAYS)


@pytest.mark.parametrize("name", sorted(GATEWAYS))
def test_a_runnable_block_starts_a_gateway_that_verifies(
    name: str, service: ServiceProcess, upstream: EchoUpstream, issuer: TestIssuer
) -> None:
    problem = missing_gateway(GATEWAYS[name])
    if problem is None and shutil.which("envsubst") is None:
        problem = "envsubst is not installed: run `make install-gateways` (gettext-base)"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    (block,) = [b for b in runnable_blocks() if f"examples/{name}/" in b]
    scratch = Path(tempfile.mkdtemp(prefix=f"doc-{name}-"))
    try:
        scratch.chmod(0o755)  # an NGINX started as root runs its worker as nobody
        port = free_port()
        verifier_host, _, verifier_port = service.http_address.rpartition(":")
        env = {
            **os.environ,
            "LISTEN_PORT": str(port),
            "APP_HOST": upstream.address[0],
            "APP_PORT": str(upstream.address[1]),
            "VERIFIER_HOST": verifier_host,
            "VERIFIER_PORT": verifier_port,
            "PREFIX": str(scratch / "run"),
            "XDG_CONFIG_HOME": str(scratch / "config"),  # Caddy's autosaved config
            "XDG_DATA_HOME": str(scratch / "data"),
        }
        log = scratch / "block.log"
        with running_block(block, env, log) as process:
            await_port(port, process, log)
            client = generate_key("ES256")
            reply = send(
                ("127.0.0.1", port), "/orders", dpop_headers(client, issuer.token(client),
                                                             "GET", "/orders"),
            )  # fmt: skip
            assert reply.status == 200, (reply, log.read_text())
            assert dict(reply.upstream_headers())["x-dpop-jkt"] == client.jkt
            denied = send(("127.0.0.1", port), "/orders")
            assert denied.status == 401
            assert denied.header("www-authenticate").startswith("DPoP ")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
