"""DPoP proofs (verifier/dpop/proof.py): the engine's sequence of RFC 9449 §4.3 checks.

Input: ``METHOD SP TARGET-URI LF`` and then the ``DPoP`` header values, one per line.
Documented outcomes: :class:`~verifier.domain.reasons.Denial` (every check) and
:class:`~verifier.jose.rfc7517.InvalidJwk` (the ``jwk`` is not a key of the type ``alg`` requires;
the engine reports it as ``proof_jwk_invalid``).
"""

from __future__ import annotations

from fuzz.fixtures import NOW, TOKEN
from fuzz.harness import Harness, text
from verifier.domain.reasons import Denial, Reason
from verifier.domain.uri import normalize_target_uri
from verifier.dpop.proof import (
    ProofLimits,
    check_ath,
    check_claims,
    check_header,
    parse_proof,
    parse_proof_body,
    replay_key,
    select_single_proof,
    split_proof,
)
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS, verify_signature
from verifier.jose.rfc7517 import InvalidJwk, public_key_for_alg
from verifier.jose.rfc7638 import thumbprint

LIMITS = ProofLimits()
ALLOWED_ALGS = frozenset(DEFAULT_PROOF_ALGS)


def request(data: bytes) -> tuple[str, str, tuple[str, ...]]:
    """The method, the target URI and the DPoP header values an input stands for."""
    first, _, rest = text(data).partition("\n")
    method, _, target_uri = first.partition(" ")
    return method, target_uri, tuple(rest.split("\n"))


def verify_proof(data: bytes) -> None:
    """Header count, syntax, header, key, signature, claims, ``ath`` and the replay key."""
    method, target_uri, values = request(data)
    proof = select_single_proof(values, LIMITS.max_proof_bytes)
    jws = parse_proof(proof)
    _, payload_b64, signature_b64 = split_proof(proof)
    # The engine's memo path decodes only the body: it must read the same payload.
    assert parse_proof_body(payload_b64, signature_b64) == (jws.payload, jws.signature)
    header = check_header(jws.header, ALLOWED_ALGS)
    key = public_key_for_alg(header.jwk, header.alg)
    jkt = thumbprint(header.jwk)
    assert len(jkt) == 43, jkt
    if not verify_signature(header.alg, key, jws.signing_input, jws.signature):
        raise Denial(Reason.PROOF_SIGNATURE_INVALID)
    claims = check_claims(jws.payload, method=method, target_uri=target_uri, now=NOW, limits=LIMITS)
    assert claims.htu == normalize_target_uri(target_uri)
    check_ath(claims, TOKEN)
    assert len(replay_key(jkt, claims.htu, claims.jti)) == 32


def check_proof_claims(data: bytes) -> None:
    """The claim checks alone, whatever the signature: mutated payloads reach them too."""
    method, target_uri, values = request(data)
    jws = parse_proof(select_single_proof(values, LIMITS.max_proof_bytes))
    check_claims(jws.payload, method=method, target_uri=target_uri, now=NOW, limits=LIMITS)


HARNESS = Harness("proof", (verify_proof, check_proof_claims), (Denial, InvalidJwk), max_len=12288)
