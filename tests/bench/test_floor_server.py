"""The benchmark's floor server (``bench/null_server.py --signature-only``) really verifies.

``bench/run.py`` reads the floor as the bound for any verifier on this stack, and trusts it
because the run aborts on any denial; that is only sound if a proof the floor allows had a valid
signature. Real process, real gRPC over loopback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from bench._load import CHECK, check_request, outcomes
from bench._procs import PinnedServer, clean_env
from verifier.dpop.jose import b64url_decode, b64url_encode
from verifier.mint import generate_key, make_proof

ROOT = Path(__file__).resolve().parents[2]
URL = "https://api.test/orders"


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    server = PinnedServer(
        [sys.executable, str(ROOT / "bench" / "null_server.py"), "--signature-only"],
        [0],
        clean_env({"DPOP_LISTEN": "127.0.0.1:0"}),
        tmp_path_factory.mktemp("floor") / "floor.log",
        announce="null server listening on",
    )
    try:
        assert any("signature only" in line for line in server.preamble), server.preamble
        with grpc.insecure_channel(server.address) as channel:
            yield channel
    finally:
        server.stop()


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
