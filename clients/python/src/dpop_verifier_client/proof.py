"""Client-side DPoP (RFC 9449 §4): a P-256 key and the ES256 proofs it signs, for services that
call DPoP-protected APIs themselves.

Needs the ``signer`` extra (``pip install 'dpop-verifier-client[signer]'``), which adds
``cryptography``; the rest of the package does not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "dpop_verifier_client.proof needs the 'signer' extra: "
        "pip install 'dpop-verifier-client[signer]' (adds cryptography)"
    ) from exc

__all__ = ["ProofSigner"]

_COORDINATE_BYTES = 32  # P-256


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_int(data: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)), "big")


def _json(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def htu_for(url: str) -> str:
    """The ``htu`` claim for a request URL: the URL without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


class ProofSigner:
    """A client's DPoP key (EC P-256), signing one fresh ES256 proof per request.

    ``ProofSigner.generate().headers("GET", "https://api.example.com/orders", token)`` gives the
    ``Authorization`` and ``DPoP`` headers of one request. Keep the key for as long as the
    access tokens bound to it live: :meth:`private_jwk` and :meth:`from_jwk` store and restore
    it. ``jkt`` is the key's RFC 7638 thumbprint, which the authorization server binds tokens to
    (``cnf.jkt``); ``public_jwk`` is the public key sent in every proof.
    """

    alg = "ES256"

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("ES256 needs a P-256 key")
        self._key = private_key
        numbers = private_key.public_key().public_numbers()
        self.public_jwk: dict[str, str] = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
            "y": _b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
        }
        # RFC 7638: the required members in lexicographic order, no whitespace.
        self.jkt = _b64url(hashlib.sha256(_json(self.public_jwk)).digest())

    @classmethod
    def generate(cls) -> ProofSigner:
        """A signer with a new random P-256 key."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_jwk(cls, private_jwk: Mapping[str, str]) -> ProofSigner:
        """A signer for a private EC P-256 JWK (as written by :meth:`private_jwk`)."""
        if private_jwk.get("kty") != "EC" or private_jwk.get("crv") != "P-256":
            raise ValueError("expected an EC P-256 private JWK")
        public = ec.EllipticCurvePublicNumbers(
            _b64url_int(private_jwk["x"]), _b64url_int(private_jwk["y"]), ec.SECP256R1()
        )
        numbers = ec.EllipticCurvePrivateNumbers(_b64url_int(private_jwk["d"]), public)
        return cls(numbers.private_key())

    def private_jwk(self) -> dict[str, str]:
        """The private key as a JWK, for storing in a secret store. Never log it."""
        d = self._key.private_numbers().private_value.to_bytes(_COORDINATE_BYTES, "big")
        return {**self.public_jwk, "d": _b64url(d)}

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        now: float | None = None,
    ) -> str:
        """The ``DPoP`` header value for one request (RFC 9449 §4.2): ``htm`` = ``method``,
        ``htu`` = ``url`` without query and fragment, a fresh random ``jti``, ``iat`` = now,
        ``ath`` when an ``access_token`` is presented, and the server's ``nonce`` if it sent
        one (a ``use_dpop_nonce`` answer carries it in ``DPoP-Nonce``)."""
        payload: dict[str, object] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": htu_for(url),
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            payload["ath"] = _b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            payload["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        signing_input = f"{_b64url(_json(header))}.{_b64url(_json(payload))}".encode("ascii")
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        # RFC 7518 §3.4: the JWS signature is R || S, each 32 bytes, not DER.
        signature = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
        return f"{signing_input.decode('ascii')}.{_b64url(signature)}"

    def headers(
        self, method: str, url: str, access_token: str, *, nonce: str | None = None
    ) -> dict[str, str]:
        """The ``Authorization: DPoP <token>`` and ``DPoP`` headers of a resource request."""
        return {
            "Authorization": f"DPoP {access_token}",
            "DPoP": self.proof(method, url, access_token=access_token, nonce=nonce),
        }
