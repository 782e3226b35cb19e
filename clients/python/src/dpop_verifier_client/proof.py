"""Client-side DPoP: a key and the proofs it signs (RFC 9449 §4), for Python clients and tests.

A thin layer over :mod:`verifier.mint`, the service's own minting helpers, so that there is one
implementation of key generation and proof signing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifier.mint import KeyPair, generate_key, load_key, make_access_token, make_proof

__all__ = ["KeyPair", "ProofSigner", "generate_key", "load_key", "make_access_token", "make_proof"]


@dataclass(frozen=True, slots=True)
class ProofSigner:
    """A client's DPoP key, signing one fresh proof per request.

    Usage: ``ProofSigner.generate().headers("GET", "https://api.example.com/orders", token)``
    gives the two headers of one request.
    """

    key: KeyPair

    @classmethod
    def generate(cls, alg: str = "ES256") -> ProofSigner:
        """A signer with a new key (ES*, RS*, PS*, EdDSA/Ed25519, Ed448)."""
        return cls(generate_key(alg))

    @classmethod
    def from_jwk(cls, private_jwk: dict[str, Any]) -> ProofSigner:
        """A signer for a private JWK saved with ``signer.key.private_jwk()``."""
        return cls(load_key(private_jwk))

    @property
    def jkt(self) -> str:
        """The key's RFC 7638 thumbprint: what the authorization server binds tokens to."""
        return self.key.jkt

    def proof(
        self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None
    ) -> str:
        """A proof for one request: ``htm``/``htu`` from ``method``/``url`` (query and fragment
        are ignored by the verifier), ``ath`` when ``access_token`` is given, a fresh ``jti``."""
        return make_proof(self.key, method, url, access_token=access_token, nonce=nonce)

    def headers(
        self, method: str, url: str, access_token: str, *, nonce: str | None = None
    ) -> dict[str, str]:
        """The ``Authorization`` and ``DPoP`` headers for a resource request."""
        return {
            "Authorization": f"DPoP {access_token}",
            "DPoP": self.proof(method, url, access_token=access_token, nonce=nonce),
        }
