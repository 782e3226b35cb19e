"""JWK import and RFC 7638 thumbprints (verifier/jose/rfc7517.py, verifier/tokens/jwks.py).

Input: a JSON object, read as a proof's ``jwk`` (strict JSON, :func:`parse_json_object`) or,
when it has a ``keys`` member, as an issuer's JWK Set imported the way the token validator
imports its keys. Documented outcomes: :class:`~verifier.jose.rfc7515.MalformedJws` (not a JSON
object), :class:`~verifier.jose.rfc7517.InvalidJwk` and :class:`~verifier.tokens.jwks.InvalidJwks`.
"""

from __future__ import annotations

import contextlib
import re

from fuzz.harness import Harness
from verifier.jose.rfc7515 import ALGORITHMS, MalformedJws, parse_json_object
from verifier.jose.rfc7517 import InvalidJwk, has_private_members, public_key_for_alg
from verifier.jose.rfc7638 import canonical_json, thumbprint
from verifier.tokens.jwks import InvalidJwks, parse_jwks

_JKT = re.compile(r"[A-Za-z0-9_-]{43}")


def import_proof_jwk(data: bytes) -> None:
    """A proof's ``jwk`` under every ``alg``: a key that imports always has a thumbprint."""
    jwk = parse_json_object(data)
    if "keys" in jwk or has_private_members(jwk):
        return
    for alg in ALGORITHMS:
        try:
            public_key_for_alg(jwk, alg)
        except InvalidJwk:
            continue
        assert _JKT.fullmatch(thumbprint(jwk)), alg
    thumbprint(jwk)


def import_issuer_keys(data: bytes) -> None:
    """An issuer's JWK Set: each usable key imported as ``TokenValidator`` does (a key that
    fails to import is skipped there, so :class:`InvalidJwk` is expected per key)."""
    document = parse_json_object(data)
    if "keys" not in document:
        return
    for key in parse_jwks(document):
        for alg in ALGORITHMS:
            if key.usable_for(alg):
                with contextlib.suppress(InvalidJwk):
                    canonical_json(key.jwk)
                    public_key_for_alg(key.jwk, alg)


HARNESS = Harness(
    "jwk", (import_proof_jwk, import_issuer_keys), (MalformedJws, InvalidJwk, InvalidJwks)
)
