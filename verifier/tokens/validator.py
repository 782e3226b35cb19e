"""Validation of JWT access tokens from trusted issuers (RFC 9068), with a verified-token cache."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from verifier.dpop.jose import ALGORITHMS, MalformedJws, PublicKey, parse_compact, verify_signature
from verifier.dpop.jwk import InvalidJwk, canonical_json, public_key_for_alg
from verifier.dpop.reasons import Denial, Reason
from verifier.engine.model import TokenClaims
from verifier.tokens.claims import check_token_claims
from verifier.tokens.jwks import IssuerKey
from verifier.tokens.sources import KeySource, KeySourceUnavailable

DEFAULT_TOKEN_ALGS = frozenset(alg for alg in ALGORITHMS if alg != "Ed448")


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """An issuer whose access tokens are accepted."""

    issuer: str
    source: KeySource
    audience: str | None = None
    algs: frozenset[str] = field(default=DEFAULT_TOKEN_ALGS)


class TokenCache:
    """Verified tokens by SHA-256 of the token, each until its ``exp``; LRU-bounded.

    ``max_entries`` (default 10,000) bounds memory: about 0.5 KiB an entry.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[bytes, TokenClaims] = OrderedDict()
        self._max = max_entries

    def get(self, digest: bytes, now: float, leeway: float) -> TokenClaims | None:
        claims = self._entries.get(digest)
        if claims is None:
            return None
        if claims.expires_at <= now - leeway:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return claims

    def put(self, digest: bytes, claims: TokenClaims) -> None:
        self._entries[digest] = claims
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class TokenValidator:
    """Verifies JWT access tokens: issuer routing by ``iss``, key lookup, signature, claims."""

    def __init__(
        self,
        issuers: Iterable[TrustedIssuer],
        *,
        leeway: float = 30.0,
        cache: TokenCache | None = None,
    ) -> None:
        self._issuers = {issuer.issuer: issuer for issuer in issuers}
        self._leeway = leeway
        self._cache = cache if cache is not None else TokenCache()
        self._imported: dict[tuple[str, str], PublicKey] = {}

    @property
    def issuers(self) -> tuple[TrustedIssuer, ...]:
        return tuple(self._issuers.values())

    def _import(self, key: IssuerKey, alg: str) -> PublicKey | None:
        try:
            cache_key = (alg, canonical_json(key.jwk))
            imported = self._imported.get(cache_key)
            if imported is None:
                imported = public_key_for_alg(key.jwk, alg)
                if len(self._imported) >= 1024:
                    self._imported.clear()
                self._imported[cache_key] = imported
            return imported
        except InvalidJwk:
            return None

    async def validate(self, token: str, now: float) -> TokenClaims:
        """Return the token's claims, or raise a :class:`Denial` naming the failed check."""
        digest = hashlib.sha256(token.encode("ascii")).digest()
        cached = self._cache.get(digest, now, self._leeway)
        if cached is not None:
            return cached
        try:
            jws = parse_compact(token)
        except MalformedJws as exc:
            raise Denial(Reason.TOKEN_MALFORMED, str(exc)) from exc
        header, payload = jws.header, jws.payload
        if header.get("typ") == "dpop+jwt" or "crit" in header:
            raise Denial(Reason.TOKEN_MALFORMED, "not an access token")
        iss = payload.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Denial(Reason.TOKEN_ISSUER_UNKNOWN)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in issuer.algs or alg not in ALGORITHMS:
            raise Denial(Reason.TOKEN_ALG_NOT_ALLOWED)
        kid = header.get("kid")
        try:
            keys = await issuer.source.keys(kid if isinstance(kid, str) else None)
        except KeySourceUnavailable as exc:
            raise Denial(Reason.KEY_SOURCE_UNAVAILABLE) from exc
        candidates = [key for key in keys if key.usable_for(alg)]
        if not candidates:
            raise Denial(Reason.TOKEN_KEY_UNKNOWN)
        for candidate in candidates[:8]:
            public_key = self._import(candidate, alg)
            if public_key is not None and verify_signature(
                alg, public_key, jws.signing_input, jws.signature
            ):
                break
        else:
            raise Denial(Reason.TOKEN_SIGNATURE_INVALID)
        claims = check_token_claims(payload, audience=issuer.audience, now=now, leeway=self._leeway)
        self._cache.put(digest, claims)
        return claims
