"""Compact JWS parsing and signature verification for the asymmetric JWS algorithms.

Only what DPoP needs, written to be audited: strict base64url (RFC 7515 §2: canonical, no
padding, no whitespace), JSON objects with unique member names, and an explicit table of
algorithms. There is no code path for ``none`` or for HMAC: they are not in the table.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PublicKey = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class MalformedJws(ValueError):
    """The input is not a compact JWS with JSON-object header and payload."""


@dataclass(frozen=True, slots=True)
class AlgSpec:
    """What an ``alg`` value requires of its key and how its signature is checked."""

    kty: str
    curves: tuple[str, ...]
    """Allowed ``crv`` values (EC and OKP); empty for RSA."""
    hash: type[hashes.HashAlgorithm] | None
    signature_bytes: int
    """Exact signature length for EC (r || s); 0 when it depends on the key."""
    pss: bool = False


# RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 (fully specified Ed25519 / Ed448).
ALGORITHMS: dict[str, AlgSpec] = {
    "ES256": AlgSpec("EC", ("P-256",), hashes.SHA256, 64),
    "ES384": AlgSpec("EC", ("P-384",), hashes.SHA384, 96),
    "ES512": AlgSpec("EC", ("P-521",), hashes.SHA512, 132),
    "RS256": AlgSpec("RSA", (), hashes.SHA256, 0),
    "RS384": AlgSpec("RSA", (), hashes.SHA384, 0),
    "RS512": AlgSpec("RSA", (), hashes.SHA512, 0),
    "PS256": AlgSpec("RSA", (), hashes.SHA256, 0, pss=True),
    "PS384": AlgSpec("RSA", (), hashes.SHA384, 0, pss=True),
    "PS512": AlgSpec("RSA", (), hashes.SHA512, 0, pss=True),
    "EdDSA": AlgSpec("OKP", ("Ed25519", "Ed448"), None, 0),
    "Ed25519": AlgSpec("OKP", ("Ed25519",), None, 0),
    "Ed448": AlgSpec("OKP", ("Ed448",), None, 0),
}

DEFAULT_PROOF_ALGS: tuple[str, ...] = (
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
    "EdDSA",
    "Ed25519",
)


@dataclass(frozen=True, slots=True)
class CompactJws:
    """A parsed, not yet verified, compact JWS."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_decode(value: str) -> bytes:
    """Decode canonical unpadded base64url (RFC 7515 §2, RFC 4648 §5); raise
    :class:`MalformedJws` for anything else: padding, characters outside the alphabet, a
    length no octet string has, or set unused bits in the last character (RFC 4648 §3.5),
    which would give one value several spellings. Every base64url value the service reads
    (JWS parts, JWK members, nonces) is decoded here."""
    if not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise MalformedJws("not base64url")
    data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    if b64url_encode(data) != value:  # RFC 4648 §3.5: only the canonical encoding
        raise MalformedJws("non-canonical base64url")
    return data


def b64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise MalformedJws("duplicate member name")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise MalformedJws("non-standard JSON constant")


# One decoder for every call (json.loads with options builds a new one each time); its scanner
# keeps no state between calls, so threads may share it as they share json.loads's own.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_object, parse_constant=_reject_constant)


def parse_json_object(data: bytes) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object with unique member names (RFC 7515 §5.2).

    Strings must be valid Unicode (RFC 7493 §2.1): an escaped lone surrogate such as
    ``"\\ud800"`` is refused here, so that every string of a parsed JWS can be encoded again.
    """
    try:
        text = data.decode("utf-8")
        value = _DECODER.decode(text)
        if "\\u" in text:  # only a \u escape can write a lone surrogate into valid UTF-8
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise MalformedJws("not a JSON object") from exc
    if not isinstance(value, dict):
        raise MalformedJws("not a JSON object")
    return value


def split_compact(token: str) -> tuple[str, str, str]:
    """The three base64url parts of a compact JWS (RFC 7515 §7.1), not yet decoded."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise MalformedJws("a compact JWS has three non-empty parts")
    return parts[0], parts[1], parts[2]


def parse_compact(token: str) -> CompactJws:
    """Split and decode a compact JWS (RFC 7515 §7.1) without verifying it."""
    header_b64, payload_b64, signature_b64 = split_compact(token)
    header = parse_json_object(b64url_decode(header_b64))
    payload, signature = parse_compact_body(payload_b64, signature_b64)
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    return CompactJws(header, payload, signing_input, signature)


def parse_compact_body(payload_b64: str, signature_b64: str) -> tuple[dict[str, Any], bytes]:
    """The decoded payload and signature of a compact JWS (its header decoded elsewhere)."""
    return parse_json_object(b64url_decode(payload_b64)), b64url_decode(signature_b64)


# Signature parameters are immutable: built once, not per verification.
_ECDSA = {
    alg: ec.ECDSA(spec.hash())
    for alg, spec in ALGORITHMS.items()
    if spec.kty == "EC" and spec.hash is not None
}
_RSA: dict[str, tuple[padding.AsymmetricPadding, hashes.HashAlgorithm]] = {
    alg: (
        padding.PSS(mgf=padding.MGF1(spec.hash()), salt_length=padding.PSS.DIGEST_LENGTH)
        if spec.pss
        else padding.PKCS1v15(),
        spec.hash(),
    )
    for alg, spec in ALGORITHMS.items()
    if spec.kty == "RSA" and spec.hash is not None
}


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    """Return True when ``signature`` is a valid ``alg`` signature of ``signing_input``.

    The caller has already checked that ``key`` is of the type ``alg`` requires
    (see :func:`verifier.jose.rfc7517.public_key_for_alg`).
    """
    spec = ALGORITHMS[alg]
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            half = spec.signature_bytes // 2
            ecdsa = _ECDSA.get(alg)
            if ecdsa is None or len(signature) != spec.signature_bytes:
                return False
            r = int.from_bytes(signature[:half], "big")
            s = int.from_bytes(signature[half:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ecdsa)
        elif isinstance(key, rsa.RSAPublicKey):
            params = _RSA.get(alg)
            if params is None or len(signature) != (key.key_size + 7) // 8:
                return False
            pad, digest = params
            key.verify(signature, signing_input, pad, digest)
        else:
            key.verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True
