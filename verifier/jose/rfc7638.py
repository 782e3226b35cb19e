"""RFC 7638 JWK thumbprints: the canonical JSON of a public JWK's required members and its
SHA-256 digest, base64url-encoded (DPoP's ``jkt``, RFC 9449 §6)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from verifier.jose.rfc7515 import b64url_encode
from verifier.jose.rfc7517 import InvalidJwk

# RFC 7638 §3.2: the required members of each key type, which alone make up the thumbprint.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def canonical_json(jwk: dict[str, Any]) -> str:
    """The RFC 7638 §3 input: required members only, sorted, no white space."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise InvalidJwk("unsupported kty")
    subset = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidJwk(f"member {name} missing or not a string")
        subset[name] = value
    return json.dumps(subset, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of ``jwk``, base64url-encoded (the ``jkt``)."""
    digest = hashlib.sha256(canonical_json(jwk).encode("utf-8")).digest()
    return b64url_encode(digest)
