"""How this service authenticates to an issuer's introspection endpoint (RFC 7662 §2.1).

* ``client_secret_basic`` and ``client_secret_post``: RFC 6749 §2.3.1;
* ``private_key_jwt``: a signed client assertion, RFC 7523 §2.2 and §3 (OIDC Core §9).

Secrets and keys come from files or environment variables named in the config, never from the
command line; they never appear in ``repr``, logs or errors.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 60


class ClientAuth(Protocol):
    """Adds client credentials to one introspection request."""

    def credentials(self, form: dict[str, str], now: float) -> tuple[str, str] | None:
        """Add form parameters to ``form``; return (client_id, secret) for HTTP Basic, or None."""
        ...


@dataclass(frozen=True, slots=True)
class ClientSecretBasic:
    """``client_secret_basic``: HTTP Basic with the form-urlencoded id and secret."""

    client_id: str
    secret: str = field(repr=False)

    def credentials(self, form: dict[str, str], now: float) -> tuple[str, str] | None:
        return (self.client_id, self.secret)


@dataclass(frozen=True, slots=True)
class ClientSecretPost:
    """``client_secret_post``: ``client_id`` and ``client_secret`` in the request body."""

    client_id: str
    secret: str = field(repr=False)

    def credentials(self, form: dict[str, str], now: float) -> tuple[str, str] | None:
        form["client_id"] = self.client_id
        form["client_secret"] = self.secret
        return None


@dataclass(frozen=True, slots=True)
class PrivateKeyJwt:
    """``private_key_jwt``: a fresh assertion per request (``iss`` = ``sub`` = client id,
    ``aud`` = ``audience``, a 60-second lifetime and a random ``jti``)."""

    client_id: str
    key: Any = field(repr=False)
    alg: str
    audience: str
    kid: str = ""

    def credentials(self, form: dict[str, str], now: float) -> tuple[str, str] | None:
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience,
            "iat": int(now),
            "exp": int(now) + ASSERTION_LIFETIME_S,
            "jti": secrets.token_urlsafe(16),
        }
        headers = {"kid": self.kid} if self.kid else None
        form["client_id"] = self.client_id
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)
        return None


def _default_alg(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ValueError("unsupported key type (use an EC, RSA or Ed25519 private key)")


def load_private_key(path: str, alg: str = "") -> tuple[Any, str, str]:
    """Read a private key for ``private_key_jwt``: a JWK (JSON) or PEM (PKCS#8 / SEC1 / PKCS#1).

    Returns (key, alg, kid): ``alg`` from the argument, else the JWK's ``alg``, else the key
    type's usual one (ES256/ES384/ES512, RS256, EdDSA); ``kid`` from the JWK. Raises
    ``ValueError`` naming the file (never its content).
    """
    data = Path(path).read_bytes()
    try:
        if data.lstrip().startswith(b"{"):
            jwk = json.loads(data)
            if "d" not in jwk:
                raise ValueError("the JWK has no private part")
            key: Any = jwt.PyJWK(jwk).key
            alg = alg or str(jwk.get("alg") or "")
            kid = str(jwk.get("kid") or "")
        else:
            key = serialization.load_pem_private_key(data, password=None)
            kid = ""
        alg = alg or _default_alg(key)
    except (ValueError, TypeError, KeyError, jwt.PyJWKError) as exc:
        raise ValueError(f"{path}: not a usable private key ({type(exc).__name__})") from None
    return key, alg, kid
