"""Stateless server nonces (RFC 9449 §8, §9).

A nonce is ``base64url(version || time step || HMAC-SHA256(secret, version || time step)[:16])``.
Any replica holding the shared secret accepts any replica's nonce, so nonces need no shared
store. Rotation: nonces made with the previous secret stay valid until they expire.

Any nonce still inside its lifetime is accepted: a new nonce is offered on success only once the
current one is past half its lifetime, never on every request (that drives clients into retry
loops).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from verifier.domain.reasons import Denial, Reason
from verifier.jose.rfc7515 import MalformedJws, b64url_decode, b64url_encode

_VERSION = b"\x01"
_CONTEXT = b"dpop-verifier nonce v1|"
_MAC_BYTES = 16
_STEP_BYTES = 8
NONCE_LENGTH = len(b64url_encode(bytes(1 + _STEP_BYTES + _MAC_BYTES)))
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class NonceKeys:
    """The shared secrets and timing of the nonce scheme."""

    current: bytes = field(repr=False)
    previous: bytes | None = field(default=None, repr=False)
    lifetime: float = 300.0
    """Seconds a nonce is accepted after it was issued."""
    step: float = 10.0
    """Issue granularity: every replica issues the same nonce within one step."""
    future_skew: float = 5.0
    """How far ahead of this replica's clock another replica's nonce may be."""

    def __post_init__(self) -> None:
        if len(self.current) < MIN_SECRET_BYTES:
            raise ValueError(f"nonce secret must be at least {MIN_SECRET_BYTES} bytes")
        if self.previous is not None and len(self.previous) < MIN_SECRET_BYTES:
            raise ValueError(f"previous nonce secret must be at least {MIN_SECRET_BYTES} bytes")
        if not 0 < self.step <= self.lifetime:
            raise ValueError("nonce step must be positive and at most the lifetime")


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT + body, hashlib.sha256).digest()[:_MAC_BYTES]


def issue_nonce(keys: NonceKeys, now: float) -> str:
    """A nonce for the time step that contains ``now``, under the current secret."""
    body = _VERSION + int(now // keys.step).to_bytes(_STEP_BYTES, "big")
    return b64url_encode(body + _mac(keys.current, body))


def nonce_issued_at(keys: NonceKeys, nonce: str) -> float:
    """Authenticate ``nonce`` and return when it was issued; raise ``nonce_invalid``."""
    if len(nonce) != NONCE_LENGTH:
        raise Denial(Reason.NONCE_INVALID)
    try:
        raw = b64url_decode(nonce)
    except MalformedJws as exc:
        raise Denial(Reason.NONCE_INVALID) from exc
    body, mac = raw[: 1 + _STEP_BYTES], raw[1 + _STEP_BYTES :]
    if body[:1] != _VERSION:
        raise Denial(Reason.NONCE_INVALID)
    secrets = (keys.current,) if keys.previous is None else (keys.current, keys.previous)
    # Evaluate every secret so timing does not reveal which one matched.
    matches = [hmac.compare_digest(mac, _mac(secret, body)) for secret in secrets]
    if not any(matches):
        raise Denial(Reason.NONCE_INVALID)
    return int.from_bytes(body[1:], "big") * keys.step


def check_nonce(keys: NonceKeys, nonce: str | None, now: float) -> float:
    """RFC 9449 §8, §9: the proof carries a nonce of ours that is still valid.

    Return the nonce's age in seconds. Raise ``nonce_required`` (absent), ``nonce_invalid``
    (not ours) or ``nonce_expired`` (ours but outside its lifetime).
    """
    if nonce is None:
        raise Denial(Reason.NONCE_REQUIRED)
    issued_at = nonce_issued_at(keys, nonce)
    age = now - issued_at
    if age > keys.lifetime or age < -(keys.future_skew + keys.step):
        raise Denial(Reason.NONCE_EXPIRED)
    return age


def should_refresh(keys: NonceKeys, age: float) -> bool:
    """Offer a fresh nonce on success once the current one is past half its lifetime."""
    return age > keys.lifetime / 2
