"""Client-side helpers: key generation, DPoP proofs and test access tokens.

For developers trying the service, for tests and for client libraries. Nothing on the
verification path imports this module.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from verifier.jose.rfc7515 import ALGORITHMS, b64url_decode, b64url_encode
from verifier.jose.rfc7638 import thumbprint

PrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

_CURVES: dict[str, tuple[ec.EllipticCurve, str, int]] = {
    "ES256": (ec.SECP256R1(), "P-256", 32),
    "ES384": (ec.SECP384R1(), "P-384", 48),
    "ES512": (ec.SECP521R1(), "P-521", 66),
}
_CURVE_BY_CRV = {crv: (curve, size) for curve, crv, size in _CURVES.values()}


def _int_b64(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A signing key with its ``alg``, public JWK and thumbprint."""

    alg: str
    private_key: PrivateKey
    public_jwk: dict[str, str]

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint of the public key."""
        return thumbprint(self.public_jwk)

    def private_jwk(self) -> dict[str, str]:
        """The private key as a JWK (with ``alg``), for storing in a file."""
        key = self.private_key
        jwk = dict(self.public_jwk)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            jwk["d"] = _int_b64(key.private_numbers().private_value, _CURVES[self.alg][2])
        elif isinstance(key, rsa.RSAPrivateKey):
            n = key.private_numbers()
            for name, value in (
                ("d", n.d),
                ("p", n.p),
                ("q", n.q),
                ("dp", n.dmp1),
                ("dq", n.dmq1),
                ("qi", n.iqmp),
            ):
                jwk[name] = _int_b64(value)
        else:
            raw = key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            jwk["d"] = b64url_encode(raw)
        jwk["alg"] = self.alg
        return jwk


def _public_jwk(key: PrivateKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        size = _CURVE_BY_CRV[crv][1]
        return {
            "kty": "EC",
            "crv": crv,
            "x": _int_b64(numbers.x, size),
            "y": _int_b64(numbers.y, size),
        }
    if isinstance(key, rsa.RSAPrivateKey):
        pub = key.public_key().public_numbers()
        return {"kty": "RSA", "n": _int_b64(pub.n), "e": _int_b64(pub.e)}
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    crv = "Ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "Ed448"
    return {"kty": "OKP", "crv": crv, "x": b64url_encode(raw)}


def generate_key(alg: str = "ES256", rsa_bits: int = 2048) -> KeyPair:
    """A fresh key pair for ``alg`` (ES*, RS*, PS*, EdDSA, Ed25519, Ed448)."""
    key: PrivateKey
    if alg in _CURVES:
        key = ec.generate_private_key(_CURVES[alg][0])
    elif alg[:2] in ("RS", "PS") and alg in ALGORITHMS:
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    elif alg in ("EdDSA", "Ed25519"):
        key = ed25519.Ed25519PrivateKey.generate()
    elif alg == "Ed448":
        key = ed448.Ed448PrivateKey.generate()
    else:
        raise ValueError(f"unsupported alg {alg!r}")
    return KeyPair(alg, key, _public_jwk(key))


def load_key(private_jwk: dict[str, Any]) -> KeyPair:
    """Rebuild a :class:`KeyPair` from a private JWK written by :meth:`KeyPair.private_jwk`."""
    alg, kty = private_jwk["alg"], private_jwk["kty"]

    def num(name: str) -> int:
        return int.from_bytes(b64url_decode(private_jwk[name]), "big")

    key: PrivateKey
    if kty == "EC":
        curve = _CURVE_BY_CRV[private_jwk["crv"]][0]
        public = ec.EllipticCurvePublicNumbers(num("x"), num("y"), curve)
        key = ec.EllipticCurvePrivateNumbers(num("d"), public).private_key()
    elif kty == "RSA":
        public_rsa = rsa.RSAPublicNumbers(num("e"), num("n"))
        key = rsa.RSAPrivateNumbers(
            num("p"), num("q"), num("d"), num("dp"), num("dq"), num("qi"), public_rsa
        ).private_key()
    elif private_jwk["crv"] == "Ed25519":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(private_jwk["d"]))
    else:
        key = ed448.Ed448PrivateKey.from_private_bytes(b64url_decode(private_jwk["d"]))
    return KeyPair(alg, key, _public_jwk(key))


def sign(alg: str, key: PrivateKey, signing_input: bytes) -> bytes:
    """A JWS signature (RFC 7518 §3) of ``signing_input``."""
    spec = ALGORITHMS[alg]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert spec.hash is not None
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(spec.hash())))
        half = spec.signature_bytes // 2
        return r.to_bytes(half, "big") + s.to_bytes(half, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        assert spec.hash is not None
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(spec.hash()), salt_length=padding.PSS.DIGEST_LENGTH)
            if spec.pss
            else padding.PKCS1v15()
        )
        return key.sign(signing_input, pad, spec.hash())
    return key.sign(signing_input)


def encode_jws(header: dict[str, Any], payload: dict[str, Any], alg: str, key: PrivateKey) -> str:
    """A compact JWS of ``payload`` with ``header``, signed with ``key``."""
    header_b64 = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    payload_b64 = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    return f"{header_b64}.{payload_b64}.{b64url_encode(sign(alg, key, signing_input))}"


def make_proof(
    key: KeyPair,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
) -> str:
    """A DPoP proof (RFC 9449 §4.2) for one request."""
    payload: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": method,
        "htu": url,
        "iat": int(time.time() if iat is None else iat),
    }
    if access_token is not None:
        digest = hashlib.sha256(access_token.encode("ascii")).digest()
        payload["ath"] = b64url_encode(digest)
    if nonce is not None:
        payload["nonce"] = nonce
    header = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_jwk}
    return encode_jws(header, payload, key.alg, key.private_key)


def make_access_token(
    issuer_key: KeyPair,
    *,
    issuer: str,
    subject: str = "alice",
    jkt: str | None = None,
    audience: str | None = None,
    client_id: str = "dev-client",
    scope: str = "",
    lifetime: float = 300.0,
    now: float | None = None,
    kid: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A JWT access token (RFC 9068), DPoP-bound to ``jkt`` when given (RFC 9449 §6.1)."""
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "client_id": client_id,
        "iat": issued,
        "exp": int(issued + lifetime),
        "jti": secrets.token_urlsafe(16),
    }
    if scope:
        payload["scope"] = scope
    if audience is not None:
        payload["aud"] = audience
    if jkt is not None:
        payload["cnf"] = {"jkt": jkt}
    payload.update(extra or {})
    header = {"typ": "at+jwt", "alg": issuer_key.alg, "kid": kid or issuer_key.jkt}
    return encode_jws(header, payload, issuer_key.alg, issuer_key.private_key)


def jwks_for(key: KeyPair, kid: str | None = None) -> dict[str, Any]:
    """A JWK Set publishing ``key``'s public half (``kid`` defaults to the thumbprint)."""
    public = dict(key.public_jwk)
    public.update({"kid": kid or key.jkt, "alg": key.alg, "use": "sig"})
    return {"keys": [public]}
