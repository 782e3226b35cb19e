"""The fixed world the harnesses run in: one instant, one issuer, one client and its token.

Keys are Ed25519 keys derived from fixed labels, so every process (the fuzzer, the replay
tests, ``fuzz/seeds.py``) builds the same keys and, Ed25519 signatures being deterministic,
the same access token: seeds minted once stay valid. They are test keys, trusted nowhere.
"""

from __future__ import annotations

import hashlib

from verifier.cli import mint
from verifier.dpop.nonce import NonceKeys
from verifier.jose.rfc7515 import b64url_encode
from verifier.tokens.jwks import parse_jwks
from verifier.tokens.sources import StaticKeySource
from verifier.tokens.validator import TrustedIssuer

NOW = 1_700_000_000
"""The clock of every harness; seeds are minted at this instant."""
ISSUER = "https://as.example.com"
ISSUER_KID = "fuzz-issuer-1"
AUDIENCE = "https://api.example.com"
RESOURCE_URL = "https://api.example.com/orders/42"
TOKEN_LEEWAY = 30.0
MAX_TOKEN_BYTES = 16384


def derived_key(label: str, alg: str = "EdDSA") -> mint.KeyPair:
    """An Ed25519 key pair whose private key is SHA-256(``label``)."""
    seed = hashlib.sha256(label.encode("utf-8")).digest()
    private_jwk = {"alg": alg, "kty": "OKP", "crv": "Ed25519", "d": b64url_encode(seed)}
    return mint.load_key(private_jwk)


ISSUER_KEY = derived_key("dpop-verifier fuzz issuer", alg="Ed25519")
CLIENT_KEY = derived_key("dpop-verifier fuzz client")

TOKEN = mint.make_access_token(
    ISSUER_KEY,
    issuer=ISSUER,
    subject="alice",
    jkt=CLIENT_KEY.jkt,
    audience=AUDIENCE,
    scope="orders:read",
    lifetime=3600,
    now=NOW,
    kid=ISSUER_KID,
    extra={"jti": "fuzz-token-1"},
)
"""A JWT access token of :data:`ISSUER`, bound to :data:`CLIENT_KEY`, valid at :data:`NOW`."""

NONCE_KEYS = NonceKeys(
    current=b"dpop-verifier fuzz nonce secret, current",
    previous=b"dpop-verifier fuzz nonce secret, previous",
)


def trusted_issuer() -> TrustedIssuer:
    """:data:`ISSUER`, its key published as :data:`ISSUER_KID` in a static key set."""
    keys = parse_jwks(mint.jwks_for(ISSUER_KEY, kid=ISSUER_KID))
    return TrustedIssuer(ISSUER, source=StaticKeySource(keys), audience=AUDIENCE)
