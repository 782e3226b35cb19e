"""RFC 7517 JSON Web Keys: strict import of a public JWK for a given ``alg`` (RFC 7518 §6 key
parameters), and the test for private members."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from verifier.jose.rfc7515 import ALGORITHMS, MalformedJws, PublicKey, b64url_decode

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
"""Members that only a private (or symmetric) JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4)."""

_EC_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
_OKP_SIZES = {"Ed25519": 32, "Ed448": 57}

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192


class InvalidJwk(ValueError):
    """The JWK is not a valid public key for the requested algorithm."""


def has_private_members(jwk: dict[str, Any]) -> bool:
    """True when ``jwk`` carries private or symmetric key material."""
    return not PRIVATE_MEMBERS.isdisjoint(jwk)


def _decode_member(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidJwk(f"member {name} missing or not a string")
    try:
        return b64url_decode(value)
    except MalformedJws as exc:
        raise InvalidJwk(f"member {name} is not base64url") from exc


def _ec_key(jwk: dict[str, Any], crv: str) -> ec.EllipticCurvePublicKey:
    curve, size = _EC_CURVES[crv]
    x, y = _decode_member(jwk, "x"), _decode_member(jwk, "y")
    if len(x) != size or len(y) != size:  # RFC 7518 §6.2.1.2: full-length coordinates
        raise InvalidJwk("coordinate length does not match the curve")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
    )
    try:
        return numbers.public_key()  # validates that the point is on the curve
    except ValueError as exc:
        raise InvalidJwk("point is not on the curve") from exc


def _rsa_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    n_bytes, e_bytes = _decode_member(jwk, "n"), _decode_member(jwk, "e")
    if n_bytes[0] == 0 or e_bytes[0] == 0:  # RFC 7518 §6.3.1: minimal encoding
        raise InvalidJwk("leading zero octets")
    n, e = int.from_bytes(n_bytes, "big"), int.from_bytes(e_bytes, "big")
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        raise InvalidJwk(f"modulus must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
    if e < 3 or e % 2 == 0 or e.bit_length() > 32:
        raise InvalidJwk("unsupported public exponent")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise InvalidJwk("invalid RSA key") from exc


def _okp_key(jwk: dict[str, Any], crv: str) -> ed25519.Ed25519PublicKey | ed448.Ed448PublicKey:
    x = _decode_member(jwk, "x")
    if len(x) != _OKP_SIZES[crv]:
        raise InvalidJwk("key length does not match the curve")
    try:
        if crv == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(x)
        return ed448.Ed448PublicKey.from_public_bytes(x)
    except ValueError as exc:
        raise InvalidJwk("invalid OKP key") from exc


def public_key_for_alg(jwk: dict[str, Any], alg: str) -> PublicKey:
    """Import ``jwk`` as the public key type that ``alg`` requires, or raise :class:`InvalidJwk`.

    ES256 requires P-256 (a P-384 key under ES256 is refused), RS*/PS* require RSA of
    2048-8192 bits, EdDSA requires Ed25519 or Ed448 and Ed25519 (RFC 9864) requires Ed25519.
    Private members are refused by the caller first (see :func:`has_private_members`).
    """
    spec = ALGORITHMS.get(alg)
    if spec is None:
        raise InvalidJwk("unsupported alg")
    if jwk.get("kty") != spec.kty:
        raise InvalidJwk(f"alg {alg} requires kty {spec.kty}")
    if spec.kty == "RSA":
        return _rsa_key(jwk)
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in spec.curves:
        raise InvalidJwk(f"alg {alg} requires crv {' or '.join(spec.curves)}")
    if spec.kty == "EC":
        return _ec_key(jwk, crv)
    return _okp_key(jwk, crv)
