"""Opaque access tokens resolved through the issuer's introspection endpoint (RFC 7662).

The answer is checked like a JWT's claims (RFC 7662 §2.2, RFC 9449 §6.2): ``active`` must be
true, ``token_type`` must be ``DPoP`` for a bound token, ``cnf.jkt`` carries the binding, ``exp``
is required, ``aud`` must hold the configured audience and ``iss``, when present, must be the
issuer asked. Answers are cached by SHA-256 of the token: a valid one until the earlier of its
``exp`` and ``cache_max`` seconds, a refusal for ``negative_ttl`` seconds; an unreachable
endpoint is never cached. The call is made on the requesting (gRPC worker) thread; concurrent
requests for one token share one call: the first makes it, the others wait for its answer.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from verifier.domain.model import TokenClaims
from verifier.domain.reasons import Denial, Reason
from verifier.tokens.claims import CLIENT_ID_CLAIMS, Audience, check_token_claims
from verifier.tokens.client_auth import ClientAuth
from verifier.tokens.discovery import IssuerMetadataSource
from verifier.tokens.http import HTTPError, IssuerHttp

log = logging.getLogger(__name__)

Outcome = TokenClaims | Denial


def check_introspection(
    response: dict[str, Any],
    *,
    issuer: str,
    audience: Audience,
    now: float,
    leeway: float,
    client_id_claims: Sequence[str] = CLIENT_ID_CLAIMS,
) -> TokenClaims:
    """The claims of an introspection answer, or a :class:`Denial` naming the failed check.

    ``audience``: one or several audiences, any of which ``aud`` must name (None: unchecked).
    ``client_id_claims``: where the answer names the client (RFC 7662 §2.2: ``client_id``)."""
    if response.get("active") is not True:  # RFC 7662 §2.2: anything but true is inactive
        raise Denial(Reason.TOKEN_INACTIVE)
    iss = response.get("iss")
    if iss is not None and iss != issuer:
        raise Denial(Reason.TOKEN_ISSUER_UNKNOWN, "the introspection answer names another issuer")
    token_type = response.get("token_type")
    if token_type is not None and (not isinstance(token_type, str) or len(token_type) > 64):
        raise Denial(Reason.TOKEN_CLAIMS_INVALID, "token_type must be a string")
    claims = check_token_claims(
        response, audience=audience, now=now, leeway=leeway, client_id_claims=client_id_claims
    )
    if token_type is not None:
        is_dpop = token_type.lower() == "dpop"  # RFC 6749 §7.1: token types are case-insensitive
        if is_dpop and not claims.jkt:  # RFC 9449 §6.2
            raise Denial(Reason.TOKEN_CLAIMS_INVALID, "token_type DPoP without cnf.jkt")
        if not is_dpop and claims.jkt:
            raise Denial(Reason.TOKEN_CLAIMS_INVALID, "cnf.jkt on a token whose type is not DPoP")
    return replace(claims, issuer=issuer)


@dataclass(slots=True)
class IntrospectionCounters:
    """Running totals of one introspector, for metrics (read them; never reset)."""

    calls: int = 0
    """Requests sent to the introspection endpoint."""
    failures: int = 0
    """Calls without a usable answer (network, HTTP status, malformed answer)."""
    cache_hits: int = 0
    """Answers served from the cache (valid or refused)."""
    collapsed: int = 0
    """Callers that waited for another caller's identical call instead of sending their own."""


class IntrospectionCache:
    """Introspection outcomes by token digest, each with its own expiry; LRU-bounded.

    ``max_entries`` (default 10,000) bounds memory: about 0.5 KiB an entry. Thread-safe.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[bytes, tuple[float, Outcome]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, digest: bytes, now: float) -> Outcome | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return entry[1]

    def put(self, digest: bytes, outcome: Outcome, until: float) -> None:
        with self._lock:
            self._entries[digest] = (until, outcome)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(slots=True)
class _Call:
    """One introspection call that other requests for the same token wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome = field(default_factory=lambda: Denial(Reason.INTROSPECTION_UNAVAILABLE))


class Introspector:
    """Resolves tokens at one issuer's introspection endpoint (RFC 7662 §2). Thread-safe.

    ``endpoint``: the URL; when empty, the ``introspection_endpoint`` of ``metadata``.
    ``cache_max``: the longest a valid answer is reused (default 300 s; never past ``exp``).
    ``negative_ttl``: how long a refusal is reused (default 10 s). ``leeway``: clock leeway for
    ``exp``/``nbf``/``iat``.
    """

    def __init__(
        self,
        issuer: str,
        *,
        auth: ClientAuth,
        http: IssuerHttp,
        endpoint: str = "",
        metadata: IssuerMetadataSource | None = None,
        audience: Audience = None,
        leeway: float = 30.0,
        client_id_claims: Sequence[str] = CLIENT_ID_CLAIMS,
        cache_max: float = 300.0,
        negative_ttl: float = 10.0,
        cache: IntrospectionCache | None = None,
    ) -> None:
        if not endpoint and metadata is None:
            raise ValueError(f"{issuer}: an introspection endpoint or discovery is needed")
        self.issuer = issuer
        self._auth = auth
        self._http = http
        self._endpoint = endpoint
        self._metadata = metadata
        self._audience = audience
        self._client_id_claims = tuple(client_id_claims)
        self._leeway = leeway
        self._cache_max = cache_max
        self._negative_ttl = negative_ttl
        self._cache = cache if cache is not None else IntrospectionCache()
        self._calls: dict[bytes, _Call] = {}
        self._lock = threading.Lock()
        """Guards :attr:`_calls` and the counters."""
        self.counters = IntrospectionCounters()
        self.last_error = ""

    def introspect(self, token: str, digest: bytes, now: float) -> TokenClaims:
        """The token's claims per its issuer (cached, else asked now: blocking, bounded by the
        HTTP timeout), or raise a :class:`Denial`. ``digest``: SHA-256 of ``token``."""
        outcome = self._cache.get(digest, now)
        if outcome is not None:
            with self._lock:
                self.counters.cache_hits += 1
        else:
            outcome = self._shared_call(token, digest, now)
        if isinstance(outcome, Denial):
            raise Denial(outcome.reason, outcome.detail)
        return outcome

    def _shared_call(self, token: str, digest: bytes, now: float) -> Outcome:
        """The outcome of one call for ``digest``: made here, or awaited from another thread."""
        with self._lock:
            ongoing = self._calls.get(digest)
            if ongoing is not None:
                self.counters.collapsed += 1
            else:
                # A call that ended since our cache miss cached its answer before leaving _calls.
                cached = self._cache.get(digest, now)
                if cached is not None:
                    self.counters.cache_hits += 1
                    return cached
                mine = self._calls[digest] = _Call()
        if ongoing is not None:
            ongoing.done.wait()
            return ongoing.outcome
        try:
            mine.outcome = self._resolve(token, digest, now)
        finally:
            with self._lock:
                del self._calls[digest]
            mine.done.set()
        return mine.outcome

    def _endpoint_url(self) -> str:
        if self._endpoint:
            return self._endpoint
        assert self._metadata is not None
        endpoint = self._metadata.current().introspection_endpoint
        if not endpoint:
            raise ValueError("the issuer's metadata has no introspection_endpoint")
        return endpoint

    def _resolve(self, token: str, digest: bytes, now: float) -> Outcome:
        with self._lock:
            self.counters.calls += 1
        try:
            url = self._endpoint_url()
            form = {"token": token, "token_type_hint": "access_token"}
            basic = self._auth.credentials(form, now)
            answer = self._http.post_form(url, form, basic_auth=basic).document
            if not isinstance(answer.get("active"), bool):  # RFC 7662 §2.2: REQUIRED boolean
                raise ValueError("the answer has no boolean 'active'")
        except Exception as exc:  # any failure: fail closed, do not cache
            self.last_error = type(exc).__name__
            with self._lock:
                self.counters.failures += 1
            level = (
                logging.ERROR
                if isinstance(exc, HTTPError) and exc.status in (400, 401)
                else (logging.WARNING)
            )
            log.log(
                level,
                "token introspection failed",
                extra={"issuer": self.issuer, "error": self.last_error, "detail": str(exc)[:200]},
            )
            return Denial(Reason.INTROSPECTION_UNAVAILABLE, self.last_error)
        self.last_error = ""
        try:
            claims = check_introspection(
                answer,
                issuer=self.issuer,
                audience=self._audience,
                now=now,
                leeway=self._leeway,
                client_id_claims=self._client_id_claims,
            )
        except Denial as denial:
            self._cache.put(digest, denial, now + self._negative_ttl)
            return denial
        self._cache.put(digest, claims, min(float(claims.expires_at), now + self._cache_max))
        return claims
