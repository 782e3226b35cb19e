"""What a user of the ``dpop-verifier`` command sees when something is wrong: one line naming
the flag, variable or file at fault, never a Python repr or traceback; a closed pipe ends
quietly; ``dev request --repeat-proof`` sends the same proof again, in a new request.

Most commands run in this process (``verifier.cli.main``) to keep the test quick; the closed
pipe needs a real process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.service import ServiceProcess
from verifier.cli import main
from verifier.cli.mint import generate_key

URL = "https://api.example.com/orders"
REPR = re.compile(r"Traceback|\w+Error\(|\w+Exception\(|KeyError|^'\w+'$")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``dpop-verifier ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    out, err = capsys.readouterr()
    assert not REPR.search(out + err), out + err
    return code, out, err


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("DPOP_", "OTEL_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def dev_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / ".dpop-dev"
    assert main(["dev", "init", "--dir", str(directory)]) == 0
    return directory


def _service(dev_dir: Path, name: str, **config: object) -> Iterator[ServiceProcess]:
    settings = json.loads((dev_dir / "config.json").read_text(encoding="utf-8"))
    settings.update(config)
    path = dev_dir.parent / name
    path.write_text(json.dumps(settings), encoding="utf-8")
    service = ServiceProcess(path)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def dev_service(dev_dir: Path) -> Iterator[ServiceProcess]:
    """The dev config, served (memory replay store, explain allowed)."""
    yield from _service(dev_dir, "dev.json")


@pytest.fixture(scope="module")
def broken_store_service(dev_dir: Path) -> Iterator[ServiceProcess]:
    """The dev config with a Redis replay store that refuses connections, explain off."""
    yield from _service(
        dev_dir, "broken.json", allow_explain=False, replay_url=f"redis://127.0.0.1:{free_port()}/0"
    )


# --- key files --------------------------------------------------------------------------------


def _jwk(**changes: object) -> dict[str, object]:
    jwk: dict[str, object] = generate_key("ES256").private_jwk()
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not None}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (json.dumps(_jwk(alg=None)), "member 'alg' is missing"),
        (json.dumps(_jwk(d=None)), "it has no private part (member 'd'): a public key cannot sign"),
        (json.dumps(_jwk(alg="HS256")), "alg 'HS256' is not one of ES256"),
        (json.dumps(_jwk(crv="P-192")), "crv 'P-192' is not one of P-256, P-384, P-521"),
        (json.dumps(_jwk(kty="oct")), "kty must be one of EC, RSA, OKP, got 'oct'"),
        (json.dumps(_jwk(x="AAAA")), "not a usable EC private key"),
        ("[1, 2]", "not a JWK (a JSON object)"),
        ("{nope", "not JSON (Expecting property name"),
        (None, "No such file or directory"),
    ],
)
def test_a_bad_private_jwk_says_what_is_wrong(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "bad.jwk"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "jwks", str(path))
    assert code == 1 and out == ""
    assert err.startswith(f"error: cannot read private JWK {path}: {problem}"), err


# --- where a setting came from ----------------------------------------------------------------


def test_serve_names_the_flag_or_variable_of_a_missing_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "serve", "--config", "/nonexistent/dpop.toml")
    assert code == 2
    assert err == (
        "configuration error: --config: cannot read /nonexistent/dpop.toml: "
        "No such file or directory\n"
    )
    monkeypatch.setenv("DPOP_CONFIG_FILE", "/nonexistent/dpop.toml")
    code, _, err = run(capsys, "serve")
    assert code == 2 and err.startswith("configuration error: DPOP_CONFIG_FILE: cannot read")


def test_serve_stops_on_a_misspelt_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DPOP_REPLAY_ULR", "redis://redis:6379/0")
    code, out, err = run(capsys, "serve", "--listen", "127.0.0.1:0")
    assert code == 2 and "listening" not in out
    assert err.startswith(
        "configuration error: DPOP_REPLAY_ULR: unknown environment variable "
        "(did you mean DPOP_REPLAY_URL?)"
    )


def test_serve_on_a_taken_port_suggests_another_and_names_its_source(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, dev_dir: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        address = f"127.0.0.1:{port}"
        config = str(dev_dir / "config.json")
        code, out, err = run(capsys, "serve", "--config", config, "--listen", address)
        assert code == 1 and "listening" not in out
        assert err.startswith(
            f"error: cannot listen on {address} (--listen): the address is in use"
        )
        assert f"Choose another: --listen 127.0.0.1:{port + 1}" in err
        monkeypatch.setenv("DPOP_LISTEN", address)
        code, _, err = run(capsys, "serve", "--config", config)
        assert code == 1 and f"cannot listen on {address} (DPOP_LISTEN)" in err


def test_call_without_a_server_names_target_and_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "call", "--url", URL, "--target", target, "--timeout", "0.5")
    assert code == 1
    assert err.startswith(f"error: no answer from {target} (--target) within 0.5 s (--timeout)")


def test_dev_request_outside_a_dev_folder_says_to_run_dev_init(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "dev", "request", "--url", URL)
    assert code == 1
    assert err.startswith(
        "error: no development keys in .dpop-dev/ (--dir): run `dpop-verifier dev init`"
    )


# --- against a server -------------------------------------------------------------------------


def test_repeat_proof_sends_the_same_proof_in_a_second_request(
    capsys: pytest.CaptureFixture[str], dev_dir: Path, dev_service: ServiceProcess
) -> None:
    argv = ["dev", "request", "--dir", str(dev_dir), "--target", dev_service.address]
    code, out, err = run(capsys, *argv, "--url", URL, "--repeat-proof", "3", "--json")
    answers = [json.loads(part) for part in re.split(r"(?m)^(?=\{)", out) if part.strip()]
    assert [a["reason_code"] for a in answers] == ["ok", "replayed", "replayed"]
    assert code == 1  # the last answer's decision
    assert "request 3 of 3: the same proof again" in err


def test_explain_from_a_server_that_does_not_honour_it_says_why_and_503s_are_in_words(
    capsys: pytest.CaptureFixture[str], dev_dir: Path, broken_store_service: ServiceProcess
) -> None:
    argv = ["dev", "request", "--dir", str(dev_dir), "--target", broken_store_service.address]
    code, out, err = run(capsys, *argv, "--url", URL, "--explain")
    assert code == 1
    assert out.startswith("decision:          DENY (replay_store_unavailable)")
    message = out.splitlines()[1]
    assert message.startswith("message:           Replay store unavailable (redis replay store")
    assert "checks:" not in out
    assert "note: the server sent no checks: it does not honour explain" in err


def test_a_closed_pipe_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` that has already exited
    try:
        done = subprocess.run(
            [sys.executable, "-m", "verifier", "keygen"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_a_file_that_cannot_be_written_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keygen", "--out", "/proc/no-such-dir/client.jwk")
    assert (code, err) == (1, "error: /proc/no-such-dir: No such file or directory\n")
