"""JSON Web Key Sets of trusted issuers (RFC 7517 §5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifier.jose.rfc7515 import ALGORITHMS
from verifier.jose.rfc7517 import has_private_members

MAX_KEYS = 100


class InvalidJwks(ValueError):
    """The document is not a usable JWK Set."""


@dataclass(frozen=True, slots=True)
class IssuerKey:
    """One signing key of an issuer, not yet imported (import depends on the token's alg)."""

    jwk: dict[str, Any]
    kid: str | None
    alg: str | None

    def usable_for(self, alg: str) -> bool:
        """True when the key's declared ``alg``/``kty``/``use`` fit a token signed with ``alg``."""
        if self.alg is not None and self.alg != alg:
            return False
        if self.jwk.get("use", "sig") != "sig":
            return False
        spec = ALGORITHMS.get(alg)
        return spec is not None and self.jwk.get("kty") == spec.kty


def parse_jwks(document: Any) -> tuple[IssuerKey, ...]:
    """Parse a JWK Set; keys of unknown types are skipped, private keys are refused."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise InvalidJwks("a JWK Set is an object with a 'keys' array")
    entries = document["keys"]
    if len(entries) > MAX_KEYS:
        raise InvalidJwks(f"more than {MAX_KEYS} keys")
    keys = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ("EC", "RSA", "OKP"):
            continue
        if has_private_members(entry):
            raise InvalidJwks("a JWK Set of verification keys must not hold private keys")
        kid, alg = entry.get("kid"), entry.get("alg")
        keys.append(
            IssuerKey(
                jwk=entry,
                kid=kid if isinstance(kid, str) else None,
                alg=alg if isinstance(alg, str) else None,
            )
        )
    return tuple(keys)
