"""Access tokens of trusted issuers: JWTs verified locally (RFC 9068) with a verified-token
cache, opaque tokens (and, per issuer, JWTs too) resolved by introspection (RFC 7662).

Routing: a token that parses as a compact JWS is a JWT and goes to the issuer its ``iss`` names
(an unknown ``iss`` is ``token_issuer_unknown``); anything else is opaque and goes to the one
issuer configured for opaque tokens (``token_malformed`` when there is none).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from verifier.domain.model import TokenClaims
from verifier.domain.reasons import Denial, Reason
from verifier.jose.rfc7515 import (
    ALGORITHMS,
    CompactJws,
    MalformedJws,
    PublicKey,
    parse_compact,
    verify_signature,
)
from verifier.jose.rfc7517 import InvalidJwk, public_key_for_alg
from verifier.jose.rfc7638 import canonical_json
from verifier.tokens.claims import (
    AT_JWT_TYPES,
    CLIENT_ID_CLAIMS,
    Audience,
    check_token_claims,
    check_token_type,
)
from verifier.tokens.discovery import IssuerMetadataSource
from verifier.tokens.introspection import Introspector
from verifier.tokens.jwks import IssuerKey
from verifier.tokens.sources import KeySource, KeySourceUnavailable

DEFAULT_TOKEN_ALGS = frozenset(alg for alg in ALGORITHMS if alg != "Ed448")


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """An issuer whose access tokens are accepted.

    ``source``: its JWT signing keys (None: its JWTs are introspected). ``audience``: one or
    several audiences, any of which ``aud`` must name (None: not checked). ``introspector``:
    its introspection endpoint, used for opaque tokens when ``opaque_tokens`` is set and for
    its JWTs when ``introspect_jwts`` is set (or when it has no ``source``). ``metadata``: its
    discovered metadata, whose ``dpop_signing_alg_values_supported`` narrows the proof
    algorithms accepted with its tokens. ``jwt_types``: the normalized ``typ`` values of its
    JWT access tokens ("" accepts none; RFC 9068 §4 by default). ``require_iat``: its JWTs
    must carry ``iat`` (RFC 9068 §2.2). ``client_id_claims``: where its tokens name the client.
    """

    issuer: str
    source: KeySource | None = None
    audience: Audience = None
    algs: frozenset[str] = field(default=DEFAULT_TOKEN_ALGS)
    introspector: Introspector | None = None
    opaque_tokens: bool = False
    introspect_jwts: bool = False
    metadata: IssuerMetadataSource | None = None
    jwt_types: frozenset[str] = AT_JWT_TYPES
    require_iat: bool = True
    client_id_claims: tuple[str, ...] = CLIENT_ID_CLAIMS

    def dpop_algs(self) -> tuple[str, ...]:
        """The proof algorithms its metadata advertises (empty: not advertised or unknown)."""
        metadata = self.metadata.metadata if self.metadata is not None else None
        return (metadata.dpop_algs or ()) if metadata is not None else ()


class TokenCache:
    """Verified tokens by SHA-256 of the token, each until its ``exp``; LRU-bounded.

    ``max_entries`` (default 10,000) bounds memory: about 0.5 KiB an entry. Thread-safe.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[bytes, TokenClaims] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, digest: bytes, now: float, leeway: float) -> TokenClaims | None:
        with self._lock:
            claims = self._entries.get(digest)
            if claims is None:
                return None
            if claims.expires_at <= now - leeway:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return claims

    def put(self, digest: bytes, claims: TokenClaims) -> None:
        with self._lock:
            self._entries[digest] = claims
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class TokenValidator:
    """Verifies access tokens: issuer routing, then a JWT's key lookup, signature and claims,
    or an opaque token's introspection. Thread-safe: the gRPC worker threads share one."""

    def __init__(
        self,
        issuers: Iterable[TrustedIssuer],
        *,
        leeway: float = 30.0,
        cache: TokenCache | None = None,
    ) -> None:
        self._issuers = {issuer.issuer: issuer for issuer in issuers}
        opaque = [i for i in self._issuers.values() if i.opaque_tokens]
        if len(opaque) > 1 or any(i.introspector is None for i in opaque):
            raise ValueError("at most one issuer resolves opaque tokens, and it must introspect")
        self._opaque_issuer = opaque[0] if opaque else None
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

    def validate(self, token: str, now: float) -> TokenClaims:
        """Return the token's claims, or raise a :class:`Denial` naming the failed check.

        A token verified before (until its ``exp``) or introspected before (while its answer is
        cached) costs no I/O; otherwise this blocks on at most one bounded fetch: the issuer's
        key set for an unknown ``kid`` (once per cool-down), or the introspection call."""
        digest = hashlib.sha256(token.encode("ascii")).digest()
        cached = self._cache.get(digest, now, self._leeway)
        if cached is not None:
            return cached
        issuer, jws = self._route(token)
        if jws is None:
            return self._introspect(issuer, token, digest, now)
        claims = self._verify_jwt(issuer, jws, jws.payload, now)
        self._cache.put(digest, claims)
        return claims

    def _route(self, token: str) -> tuple[TrustedIssuer, CompactJws | None]:
        """The issuer that decides ``token`` and, when that issuer verifies it locally, the
        parsed JWT (None: the issuer is asked by introspection). Pure; raises a
        :class:`Denial` for a token no trusted issuer takes."""
        try:
            jws = parse_compact(token)
        except MalformedJws as exc:
            if self._opaque_issuer is None:
                raise Denial(Reason.TOKEN_MALFORMED, str(exc)) from exc
            return self._opaque_issuer, None
        header, payload = jws.header, jws.payload
        if header.get("typ") == "dpop+jwt" or "crit" in header:
            raise Denial(Reason.TOKEN_MALFORMED, "not an access token")
        iss = payload.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Denial(Reason.TOKEN_ISSUER_UNKNOWN)
        if issuer.source is None or issuer.introspect_jwts:
            # ``iss`` only routes here: the issuer's answer decides (RFC 7662 §2.2).
            return issuer, None
        return issuer, jws

    def _introspect(
        self, issuer: TrustedIssuer, token: str, digest: bytes, now: float
    ) -> TokenClaims:
        if issuer.introspector is None:
            raise Denial(Reason.KEY_SOURCE_UNAVAILABLE, "no key source nor introspection")
        claims = issuer.introspector.introspect(token, digest, now)
        return self._narrowed(issuer, claims)

    @staticmethod
    def _narrowed(issuer: TrustedIssuer, claims: TokenClaims) -> TokenClaims:
        dpop_algs = issuer.dpop_algs()
        return replace(claims, dpop_algs=dpop_algs) if dpop_algs else claims

    def _verify_jwt(
        self, issuer: TrustedIssuer, jws: CompactJws, payload: dict[str, Any], now: float
    ) -> TokenClaims:
        assert issuer.source is not None
        header = jws.header
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in issuer.algs or alg not in ALGORITHMS:
            raise Denial(Reason.TOKEN_ALG_NOT_ALLOWED)
        check_token_type(header, issuer.jwt_types)  # before any key lookup or fetch
        kid = header.get("kid")
        try:
            keys = issuer.source.keys(kid if isinstance(kid, str) else None)
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
        claims = check_token_claims(
            payload,
            audience=issuer.audience,
            now=now,
            leeway=self._leeway,
            require_iat=issuer.require_iat,
            client_id_claims=issuer.client_id_claims,
        )
        return self._narrowed(issuer, replace(claims, alg=alg))
