"""Proof and token check settings: allowed algorithms, ``iat`` window, clock leeway, size
limits and server nonces (RFC 9449 §4.3, §9, §11)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from verifier.config.values import (
    DEFAULT_ALGS,
    SECRET,
    ConfigError,
    Parser,
    Section,
    check_algs,
    check_min,
    parse_algs,
    parse_secret,
)

MIN_NONCE_SECRET_BYTES = 32

_MINIMUMS = {
    "iat_max_age_seconds": 1,
    "iat_max_skew_seconds": 0,
    "token_leeway_seconds": 0,
    "max_proof_bytes": 1,
    "max_token_bytes": 1,
    "max_jti_chars": 1,
    "nonce_lifetime_seconds": 1,
}


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ProofSettings(Section):
    """What a proof and its access token must satisfy. Checks itself on construction."""

    proof_algs: tuple[str, ...] = DEFAULT_ALGS
    iat_max_age_seconds: int = 60
    iat_max_skew_seconds: int = 30
    token_leeway_seconds: int = 30
    max_proof_bytes: int = 8192
    max_token_bytes: int = 16384
    max_jti_chars: int = 256
    nonce_required: bool = False
    nonce_secret: bytes = field(default=b"", metadata=SECRET)
    nonce_previous_secret: bytes = field(default=b"", metadata=SECRET)
    nonce_lifetime_seconds: int = 300

    PARSERS: ClassVar[Mapping[str, Parser]] = {
        "proof_algs": parse_algs,
        "nonce_secret": parse_secret,
        "nonce_previous_secret": parse_secret,
    }
    SECRET_FILES: ClassVar[Mapping[str, str]] = {
        "nonce_secret": "nonce_secret_file",
        "nonce_previous_secret": "nonce_previous_secret_file",
    }

    def __post_init__(self) -> None:
        for name, minimum in _MINIMUMS.items():
            check_min("DPOP_" + name.upper(), getattr(self, name), minimum)
        check_algs("DPOP_PROOF_ALGS", self.proof_algs)
        self._check_nonce_secrets()

    @property
    def max_credential_bytes(self) -> int:
        """The largest proof plus the largest token: what a request's headers must fit."""
        return self.max_proof_bytes + self.max_token_bytes

    def _check_nonce_secrets(self) -> None:
        for setting, secret in (
            ("DPOP_NONCE_SECRET", self.nonce_secret),
            ("DPOP_NONCE_PREVIOUS_SECRET", self.nonce_previous_secret),
        ):
            if secret and len(secret) < MIN_NONCE_SECRET_BYTES:
                raise ConfigError(setting, f"must be at least {MIN_NONCE_SECRET_BYTES} bytes long")
        if self.nonce_previous_secret and not self.nonce_secret:
            raise ConfigError("DPOP_NONCE_PREVIOUS_SECRET", "is set but DPOP_NONCE_SECRET is not")
        if self.nonce_required and not self.nonce_secret:
            raise ConfigError(
                "DPOP_NONCE_SECRET",
                "required when DPOP_NONCE_REQUIRED is true (or set DPOP_NONCE_SECRET_FILE)",
            )
