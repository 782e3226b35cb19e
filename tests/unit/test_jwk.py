"""Strict public JWK import per ``alg`` and RFC 7638 thumbprints."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from tests.unit.helpers import key, small_rsa_key
from verifier.cli import mint
from verifier.jose.rfc7515 import ALGORITHMS, b64url_decode, b64url_encode, verify_signature
from verifier.jose.rfc7517 import InvalidJwk, has_private_members, public_key_for_alg
from verifier.jose.rfc7638 import canonical_json, thumbprint

ALL_ALGS = sorted(ALGORITHMS)


def _with(jwk: dict[str, Any], **members: Any) -> dict[str, Any]:
    return {**jwk, **members}


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_each_alg_imports_its_key_and_verifies_its_signature(alg: str) -> None:
    signer = key(alg)
    public = public_key_for_alg(signer.public_jwk, alg)
    message = b"signing input"
    signature = mint.sign(alg, signer.private_key, message)
    assert verify_signature(alg, public, message, signature)
    assert not verify_signature(alg, public, message + b"!", signature)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "RS256", "PS256", "Ed25519"])
def test_signature_of_another_key_is_invalid(alg: str) -> None:
    public = public_key_for_alg(key(alg, 0).public_jwk, alg)
    signature = mint.sign(alg, key(alg, 1).private_key, b"m")
    assert not verify_signature(alg, public, b"m", signature)


@pytest.mark.parametrize(("alg", "size"), [("ES256", 64), ("ES384", 96), ("ES512", 132)])
def test_ec_signature_must_have_the_exact_length(alg: str, size: int) -> None:
    signer = key(alg)
    public = public_key_for_alg(signer.public_jwk, alg)
    signature = mint.sign(alg, signer.private_key, b"m")
    assert len(signature) == size
    assert not verify_signature(alg, public, b"m", signature + b"\x00")
    assert not verify_signature(alg, public, b"m", signature[:-1])
    assert not verify_signature(alg, public, b"m", b"")


def test_rsa_signature_must_have_the_modulus_length() -> None:
    signer = key("RS256")
    public = public_key_for_alg(signer.public_jwk, "RS256")
    signature = mint.sign("RS256", signer.private_key, b"m")
    assert not verify_signature("RS256", public, b"m", b"\x00" + signature)
    assert not verify_signature("RS256", public, b"m", signature[:-1])


def test_pkcs1_and_pss_signatures_are_not_interchangeable() -> None:
    public = public_key_for_alg(key("RS256").public_jwk, "PS256")
    pkcs1 = mint.sign("RS256", key("RS256").private_key, b"m")
    assert not verify_signature("PS256", public, b"m", pkcs1)


def test_imported_key_types() -> None:
    assert isinstance(
        public_key_for_alg(key("ES256").public_jwk, "ES256"), ec.EllipticCurvePublicKey
    )
    assert isinstance(public_key_for_alg(key("PS384").public_jwk, "PS384"), rsa.RSAPublicKey)
    assert isinstance(
        public_key_for_alg(key("Ed25519").public_jwk, "EdDSA"), ed25519.Ed25519PublicKey
    )
    assert isinstance(public_key_for_alg(key("Ed448").public_jwk, "EdDSA"), ed448.Ed448PublicKey)


@pytest.mark.parametrize(
    ("jwk_alg", "alg"),
    [
        ("ES256", "RS256"),  # EC key, RSA alg
        ("RS256", "ES256"),  # RSA key, EC alg
        ("Ed25519", "ES256"),  # OKP key, EC alg
        ("ES256", "EdDSA"),  # EC key, OKP alg
        ("RS256", "EdDSA"),
        ("ES384", "ES256"),  # P-384 key under ES256
        ("ES256", "ES384"),
        ("ES512", "ES384"),
        ("Ed448", "Ed25519"),  # Ed448 under the fully specified Ed25519 (RFC 9864)
        ("Ed25519", "Ed448"),
    ],
)
def test_key_of_the_wrong_type_for_alg_is_refused(jwk_alg: str, alg: str) -> None:
    with pytest.raises(InvalidJwk):
        public_key_for_alg(key(jwk_alg).public_jwk, alg)


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256K", "", "es256"])
def test_unsupported_alg_is_refused(alg: str) -> None:
    with pytest.raises(InvalidJwk):
        public_key_for_alg(key("ES256").public_jwk, alg)


def _ec_jwk() -> dict[str, Any]:
    return dict(key("ES256").public_jwk)


def _coordinate(jwk: dict[str, Any], name: str) -> bytes:
    return b64url_decode(jwk[name])


def _not_on_curve() -> dict[str, Any]:
    jwk = _ec_jwk()
    y = bytearray(_coordinate(jwk, "y"))
    y[-1] ^= 1
    return _with(jwk, y=b64url_encode(bytes(y)))


INVALID_EC = [
    ("point not on curve", _not_on_curve),
    ("short x", lambda: _with(_ec_jwk(), x=b64url_encode(_coordinate(_ec_jwk(), "x")[1:]))),
    ("short y", lambda: _with(_ec_jwk(), y=b64url_encode(_coordinate(_ec_jwk(), "y")[1:]))),
    ("long x", lambda: _with(_ec_jwk(), x=b64url_encode(b"\0" + _coordinate(_ec_jwk(), "x")))),
    ("x missing", lambda: {k: v for k, v in _ec_jwk().items() if k != "x"}),
    ("y missing", lambda: {k: v for k, v in _ec_jwk().items() if k != "y"}),
    ("crv missing", lambda: {k: v for k, v in _ec_jwk().items() if k != "crv"}),
    ("crv unknown", lambda: _with(_ec_jwk(), crv="secp256k1")),
    ("crv not a string", lambda: _with(_ec_jwk(), crv=256)),
    ("x not a string", lambda: _with(_ec_jwk(), x=12345)),
    ("x empty", lambda: _with(_ec_jwk(), x="")),
    ("x padded", lambda: _with(_ec_jwk(), x=_ec_jwk()["x"] + "=")),
    ("x standard base64", lambda: _with(_ec_jwk(), x=_ec_jwk()["x"][:-2] + "+/")),
    ("kty missing", lambda: {k: v for k, v in _ec_jwk().items() if k != "kty"}),
    ("kty lower case", lambda: _with(_ec_jwk(), kty="ec")),
    ("point at x=0,y=0", lambda: _with(_ec_jwk(), x="A" * 43, y="A" * 43)),
]


@pytest.mark.parametrize(("why", "build"), INVALID_EC, ids=[why for why, _ in INVALID_EC])
def test_invalid_ec_key_is_refused(why: str, build: Any) -> None:
    with pytest.raises(InvalidJwk):
        public_key_for_alg(build(), "ES256")


def _rsa_jwk() -> dict[str, Any]:
    return dict(key("RS256").public_jwk)


INVALID_RSA = [
    ("1024-bit modulus", lambda: dict(small_rsa_key().public_jwk)),
    (
        "2047-bit modulus",
        lambda: _with(_rsa_jwk(), n=b64url_encode((2**2046 + 1).to_bytes(256, "big")[1:])),
    ),
    (
        "8200-bit modulus",
        lambda: _with(_rsa_jwk(), n=b64url_encode((2**8200 + 1).to_bytes(1026, "big"))),
    ),
    ("leading zero in n", lambda: _with(_rsa_jwk(), n="AA" + _rsa_jwk()["n"])),
    ("leading zero in e", lambda: _with(_rsa_jwk(), e="AAEAAQ")),
    ("e = 1", lambda: _with(_rsa_jwk(), e="AQ")),
    ("e even", lambda: _with(_rsa_jwk(), e="AQAA")),
    (
        "e wider than 32 bits",
        lambda: _with(_rsa_jwk(), e=b64url_encode((2**40 + 1).to_bytes(6, "big"))),
    ),
    ("n missing", lambda: {"kty": "RSA", "e": "AQAB"}),
    ("e missing", lambda: {"kty": "RSA", "n": _rsa_jwk()["n"]}),
    ("n not a string", lambda: _with(_rsa_jwk(), n=1)),
    ("n not base64url", lambda: _with(_rsa_jwk(), n="n" * 341 + "*")),
]


@pytest.mark.parametrize(("why", "build"), INVALID_RSA, ids=[why for why, _ in INVALID_RSA])
@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_invalid_rsa_key_is_refused(why: str, build: Any, alg: str) -> None:
    with pytest.raises(InvalidJwk):
        public_key_for_alg(build(), alg)


@pytest.mark.parametrize("bits", [2048, 8192])
def test_rsa_modulus_bounds_are_inclusive(bits: int) -> None:
    n = (2 ** (bits - 1) + 1).to_bytes(bits // 8, "big")
    public = public_key_for_alg(_with(_rsa_jwk(), n=b64url_encode(n)), "RS256")
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == bits


INVALID_OKP = [
    ("short x", lambda: _with(key("Ed25519").public_jwk, x=b64url_encode(b"\1" * 31))),
    ("long x", lambda: _with(key("Ed25519").public_jwk, x=b64url_encode(b"\1" * 33))),
    ("x missing", lambda: {"kty": "OKP", "crv": "Ed25519"}),
    ("X25519 is not a signature curve", lambda: _with(key("Ed25519").public_jwk, crv="X25519")),
]


@pytest.mark.parametrize(("why", "build"), INVALID_OKP, ids=[why for why, _ in INVALID_OKP])
def test_invalid_okp_key_is_refused(why: str, build: Any) -> None:
    with pytest.raises(InvalidJwk):
        public_key_for_alg(build(), "EdDSA")


@pytest.mark.parametrize(
    "members",
    [
        {"d": "x"},
        {"p": "x"},
        {"q": "x"},
        {"dp": "x"},
        {"dq": "x"},
        {"qi": "x"},
        {"oth": []},
        {"k": "x"},
    ],
)
def test_private_members_are_detected(members: dict[str, Any]) -> None:
    assert has_private_members({**key("ES256").public_jwk, **members})


@pytest.mark.parametrize("alg", ["ES256", "RS256", "Ed25519"])
def test_public_jwks_have_no_private_members(alg: str) -> None:
    assert not has_private_members(key(alg).public_jwk)
    assert has_private_members(key(alg).private_jwk())


def test_thumbprint_ignores_optional_members_and_member_order() -> None:
    jwk = key("ES256").public_jwk
    decorated = {"use": "sig", "kid": "k1", "alg": "ES256", **dict(reversed(list(jwk.items())))}
    assert thumbprint(decorated) == thumbprint(jwk)
    assert canonical_json(decorated) == canonical_json(jwk)


def test_thumbprint_of_each_key_type() -> None:
    ec_jwk, rsa_jwk, okp_jwk = (
        key("ES256").public_jwk,
        key("RS256").public_jwk,
        key("Ed25519").public_jwk,
    )
    assert canonical_json(ec_jwk).startswith('{"crv":"P-256","kty":"EC","x":')
    assert canonical_json(rsa_jwk).startswith('{"e":"AQAB","kty":"RSA","n":')
    assert canonical_json(okp_jwk).startswith('{"crv":"Ed25519","kty":"OKP","x":')
    prints = {thumbprint(ec_jwk), thumbprint(rsa_jwk), thumbprint(okp_jwk)}
    assert len(prints) == 3 and all(len(value) == 43 for value in prints)


@pytest.mark.parametrize(
    "jwk",
    [
        {},
        {"kty": "oct", "k": "AAAA"},
        {"kty": 1},
        {"kty": "EC", "crv": "P-256", "x": "AAAA"},
        {"kty": "RSA", "n": "AAAA", "e": 65537},
        {"kty": "OKP", "crv": "Ed25519", "x": ""},
    ],
)
def test_thumbprint_needs_the_required_members(jwk: dict[str, Any]) -> None:
    with pytest.raises(InvalidJwk):
        thumbprint(jwk)


def test_thumbprint_changes_with_the_key() -> None:
    assert key("ES256", 0).jkt != key("ES256", 1).jkt
