"""The benchmark's floor server (``bench/null_server.py --signature-only``) really verifies,
on every server stack it can run on (``--stack threads|aio|uvloop``).

``bench/run.py`` reads the floor as the bound for any verifier on a stack, and trusts it
because the run aborts on any denial; that is only sound if a proof the floor allows had a valid
signature. Real processes, real gRPC over loopback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from bench._load import CHECK, check_request, outcomes
from bench._procs import PinnedServer, clean_env
from verifier.cli.mint import generate_key, make_proof
from verifier.jose.rfc7515 import b64url_decode, b64url_encode

ROOT = Path(__file__).resolve().parents[2]
URL = "https://api.test/orders"


def _server(stack: str, *options: str, log_dir: Path) -> PinnedServer:
    return PinnedServer(
        [sys.executable, str(ROOT / "bench" / "null_server.py"), "--stack", stack, *options],
        [0],
        clean_env({"DPOP_LISTEN": "127.0.0.1:0"}),
        log_dir / f"{stack}.log",
        announce="null server listening on",
    )


@pytest.fixture(scope="module", params=["threads", "aio", "uvloop"])
def floor(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[grpc.Channel]:
    stack: str = request.param
    server = _server(stack, "--signature-only", log_dir=tmp_path_factory.mktemp("floor"))
    try:
        (described,) = [line for line in server.preamble if line.startswith("null server stack")]
        assert "signature only" in described
        assert ("grpc.aio.server on " + stack in described) == (stack != "threads"), described
        with grpc.insecure_channel(server.address) as channel:
            yield channel
    finally:
        server.stop()


@pytest.mark.parametrize("stack", ["threads", "aio", "uvloop"])
def test_the_null_server_allows_anything_on_every_stack(stack: str, tmp_path: Path) -> None:
    server = _server(stack, log_dir=tmp_path)
    try:
        with grpc.insecure_channel(server.address) as channel:
            assert _answer(channel, "not a proof") == "allow"
    finally:
        assert server.stop() == ""  # stopped on SIGTERM, quietly
        assert server.process.returncode == 0, server.log_file.read_text()


def _answer(channel: grpc.Channel, proof: str) -> str:
    call = channel.unary_unary(CHECK)
    raw = call(check_request("token", proof), timeout=10)
    (outcome,) = outcomes(CHECK, [raw])
    return outcome


def _with_part(proof: str, index: int, part: str) -> str:
    parts = proof.split(".")
    parts[index] = part
    return ".".join(parts)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_a_valid_proof_is_allowed(floor: grpc.Channel, alg: str) -> None:
    assert _answer(floor, make_proof(generate_key(alg), "GET", URL)) == "allow"


def test_a_signature_over_other_claims_is_denied(floor: grpc.Channel) -> None:
    client = generate_key("ES256")
    proof = make_proof(client, "GET", URL)
    assert _answer(floor, proof) == "allow"  # the header's key is now memoized
    other = make_proof(client, "POST", URL)
    forged = _with_part(proof, 1, other.split(".")[1])  # this payload, that signature
    assert _answer(floor, forged) == "invalid_dpop_proof"


def test_a_flipped_signature_bit_is_denied(floor: grpc.Channel) -> None:
    proof = make_proof(generate_key("ES256"), "GET", URL)
    signature = bytearray(b64url_decode(proof.split(".")[2]))
    signature[-1] ^= 1
    assert _answer(floor, _with_part(proof, 2, b64url_encode(bytes(signature)))) != "allow"


@pytest.mark.parametrize(
    "proof",
    [
        "",
        "not a jwt",
        "a.b",
        "e30.e30.",  # {} header: no alg
        b64url_encode(b'{"alg":"none","typ":"dpop+jwt"}') + ".e30.",
        b64url_encode(b'{"alg":"HS256","typ":"dpop+jwt","jwk":{"kty":"oct","k":"AA"}}')
        + ".e30."
        + b64url_encode(b"\0" * 32),
    ],
    ids=["empty", "not-jwt", "two-parts", "no-alg", "alg-none", "hmac"],
)
def test_malformed_proofs_and_forbidden_algs_are_denied(floor: grpc.Channel, proof: str) -> None:
    assert _answer(floor, proof) == "invalid_dpop_proof"
