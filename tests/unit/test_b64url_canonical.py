"""Only canonical base64url is decoded (RFC 4648 §3.5, RFC 7515 §2): the unused bits of the last
character are zero, there is no padding, and every character is of the base64url alphabet.
Otherwise one value has several spellings: a signature, a nonce or a JWK coordinate could be
re-spelled without changing what it decodes to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.helpers import (
    assert_allowed,
    assert_denied,
    make_proof,
    make_token,
    make_verifier,
    proof_key,
    resource_facts,
    sign_jws,
)
from verifier.domain.model import Policy
from verifier.domain.reasons import Denial, Reason
from verifier.dpop.nonce import NonceKeys, issue_nonce, nonce_issued_at
from verifier.jose.rfc7515 import MalformedJws, b64url_decode, b64url_encode, parse_compact
from verifier.jose.rfc7517 import InvalidJwk, public_key_for_alg

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
NOW = 1_700_000_000


def respelled(value: str, unused: int = 1) -> str:
    """``value`` with unused bits of its last character set: it decodes to the same octets."""
    assert len(value) % 4 in (2, 3), "no unused bits"
    last = ALPHABET.index(value[-1])
    assert last & unused == 0
    return value[:-1] + ALPHABET[last | unused]


@pytest.mark.parametrize(
    ("value", "decoded"),
    [("", b""), ("QQ", b"A"), ("QUI", b"AB"), ("QUJD", b"ABC"), ("_-8", b"\xff\xef")],
)
def test_canonical_values_decode(value: str, decoded: bytes) -> None:
    assert b64url_decode(value) == decoded


@pytest.mark.parametrize(
    "value",
    [
        "QR",  # "A" with the 4 unused bits 0001
        "QX",
        "QUJ",  # "AB" with the 2 unused bits 01
        "QUL",
        "QQ==",  # padding
        "QUI=",
        "Q",  # no octet has 6 bits
        "QUJD+",
        "QU/D",
        "QU JD",
        "QUJD\n",
        "\uff31\uff35\uff2a\uff24",  # full-width "QUJD": str.isalnum() accepts it
    ],
)
def test_non_canonical_values_are_refused(value: str) -> None:
    with pytest.raises(MalformedJws):
        b64url_decode(value)


@given(st.binary(max_size=64), st.integers(1, 15))
def test_only_the_canonical_spelling_decodes(data: bytes, unused: int) -> None:
    canonical = b64url_encode(data)
    assert b64url_decode(canonical) == data
    spare = {2: 0b1111, 3: 0b11}.get(len(canonical) % 4, 0)
    if unused & spare:
        with pytest.raises(MalformedJws):
            b64url_decode(respelled(canonical, unused & spare))


def _parts(jws: str) -> list[str]:
    return jws.split(".")


def test_a_respelled_signature_is_malformed() -> None:
    token = make_token()
    proof = make_proof(access_token=token)  # ES256: 64 octets, 86 characters, 4 unused bits
    head, payload, signature = _parts(proof)
    facts = resource_facts(token=token, proof=f"{head}.{payload}.{respelled(signature)}")
    assert_denied(make_verifier().verify(facts), Reason.PROOF_MALFORMED)


def test_a_respelled_signature_is_malformed_with_a_known_header() -> None:
    verifier = make_verifier()
    token = make_token()
    assert_allowed(verifier.verify(resource_facts(token=token)))  # the header is memoized
    head, payload, signature = _parts(make_proof(access_token=token))
    facts = resource_facts(token=token, proof=f"{head}.{payload}.{respelled(signature)}")
    assert_denied(verifier.verify(facts), Reason.PROOF_MALFORMED)


def test_respelled_header_and_payload_are_malformed() -> None:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": proof_key().public_jwk}
    for size in range(3):  # a payload of each length modulo 3
        jws = sign_jws(header, {"jti": "j" * size, "htm": "GET"}, proof_key())
        head, payload, signature = _parts(jws)
        if len(payload) % 4:
            with pytest.raises(MalformedJws):
                parse_compact(f"{head}.{respelled(payload)}.{signature}")
        if len(head) % 4:
            with pytest.raises(MalformedJws):
                parse_compact(f"{respelled(head)}.{payload}.{signature}")


def test_a_respelled_jwk_coordinate_is_invalid() -> None:
    jwk = dict(proof_key().public_jwk)  # P-256: 32 octets, 43 characters, 2 unused bits
    public_key_for_alg(jwk, "ES256")
    for member in ("x", "y"):
        with pytest.raises(InvalidJwk):
            public_key_for_alg({**jwk, member: respelled(jwk[member])}, "ES256")


def test_a_proof_with_a_respelled_jwk_is_denied() -> None:
    key = proof_key()
    token = make_token()
    jwk = {**key.public_jwk, "x": respelled(key.public_jwk["x"])}
    proof = make_proof(key, access_token=token, header={"jwk": jwk})
    assert_denied(make_verifier().verify(resource_facts(token=token, proof=proof)),
                  Reason.PROOF_JWK_INVALID)  # fmt: skip


KEYS = NonceKeys(current=b"n" * 32)


def test_a_respelled_nonce_is_invalid() -> None:
    nonce = issue_nonce(KEYS, NOW)  # 25 octets, 34 characters, 4 unused bits
    assert nonce_issued_at(KEYS, nonce) <= NOW
    with pytest.raises(Denial) as caught:
        nonce_issued_at(KEYS, respelled(nonce))
    assert caught.value.reason is Reason.NONCE_INVALID


def test_a_proof_with_a_respelled_nonce_is_denied() -> None:
    token = make_token()
    nonce = respelled(issue_nonce(KEYS, NOW))
    proof = make_proof(access_token=token, nonce=nonce)
    facts = resource_facts(token=token, proof=proof, policy=Policy(nonce_required=True))
    assert_denied(make_verifier(nonce_keys=KEYS).verify(facts), Reason.NONCE_INVALID)
