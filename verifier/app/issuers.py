"""Builds each trusted issuer's token sources from its settings (part of the composition root).

Per issuer: one pooled HTTP client, optionally its discovered metadata, a key source (JWKS file,
JWKS URL or the metadata's ``jwks_uri``) and an introspection client. See docs/token-sources.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verifier.config import IssuerSettings
from verifier.tokens.claims import normalize_typ
from verifier.tokens.client_auth import (
    ClientAuth,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    load_private_key,
)
from verifier.tokens.discovery import Fetcher, IssuerMetadataSource, MetadataUnavailable
from verifier.tokens.http import IssuerHttp
from verifier.tokens.introspection import Introspector
from verifier.tokens.sources import KeySource, RemoteKeySource, SourceStatus, StaticKeySource
from verifier.tokens.validator import TrustedIssuer

log = logging.getLogger(__name__)

WrapFetcher = Callable[[Fetcher, str], Fetcher]
"""Decorates an issuer's document fetcher (telemetry); gets the (synchronous) fetcher and the
issuer."""
WrapSource = Callable[[KeySource, str], KeySource]
"""Decorates an issuer's key source (telemetry); gets the source and the issuer."""


@dataclass
class IssuerParts:
    """One issuer's adapters, whose lifecycle the app owns."""

    trusted: TrustedIssuer
    clients: tuple[IssuerHttp, ...]
    source: KeySource | None = None
    remote: RemoteKeySource | None = None
    metadata: IssuerMetadataSource | None = None

    async def start(self) -> None:
        """Load metadata and keys now (a failure is logged; they are retried later)."""
        if self.source is not None:
            await self.source.start()
        elif self.metadata is not None:
            with contextlib.suppress(MetadataUnavailable):
                await asyncio.to_thread(self.metadata.current)

    async def close(self) -> None:
        """Stop the key source's refresh, then close the HTTP clients."""
        if self.source is not None:
            await self.source.close()
        for client in self.clients:
            client.close()

    def healthy(self) -> bool:
        """Its tokens can be checked: keys usable (if remote), last introspection answered."""
        if self.remote is not None and not self.remote.status().usable:
            return False
        introspector = self.trusted.introspector
        return introspector is None or not introspector.last_error

    def status(self) -> dict[str, Any]:
        """Health detail: the key source's state and the last discovery/introspection error."""
        detail: dict[str, Any] = {"issuer": self.trusted.issuer}
        if self.remote is not None:
            status: SourceStatus = self.remote.status()
            detail.update(
                usable=status.usable,
                keys_state=status.state,
                keys=status.keys,
                keys_age_seconds=status.age_seconds,
                consecutive_failures=status.consecutive_failures,
                last_error=status.last_error,
            )
        if self.metadata is not None:
            detail["metadata_error"] = self.metadata.last_error
        if self.trusted.introspector is not None:
            detail["introspection_error"] = self.trusted.introspector.last_error
        return detail


def _client_auth(issuer: IssuerSettings) -> ClientAuth:
    client_id, method = issuer.introspection_client_id, issuer.introspection_auth
    if method == "client_secret_post":
        return ClientSecretPost(client_id, issuer.introspection_secret)
    if method == "private_key_jwt":
        key, alg, kid = load_private_key(
            issuer.introspection_key_file, issuer.introspection_key_alg
        )
        audience = issuer.introspection_assertion_audience or issuer.issuer
        return PrivateKeyJwt(client_id, key, alg, audience, kid)
    return ClientSecretBasic(client_id, issuer.introspection_secret)


def build_issuer(
    issuer: IssuerSettings,
    *,
    leeway: float,
    wrap_fetcher: WrapFetcher | None = None,
    wrap_source: WrapSource | None = None,
) -> IssuerParts:
    """The issuer's adapters. Raises ``ValueError``/``OSError`` for unusable key files."""
    http = IssuerHttp(ca_file=issuer.ca_file)
    fetch: Fetcher = http.get_json
    if wrap_fetcher is not None:
        fetch = wrap_fetcher(fetch, issuer.issuer)
    metadata = None
    if issuer.discovers:
        metadata = IssuerMetadataSource(issuer.issuer, fetch, metadata_url=issuer.metadata_url)
    remote = None
    source: KeySource | None = None
    if issuer.jwks_file:
        source = StaticKeySource.from_file(issuer.jwks_file)
    elif issuer.jwks_uri or metadata is not None:
        remote = RemoteKeySource(
            issuer.jwks_uri,
            metadata=metadata,
            refresh_interval=float(issuer.jwks_refresh_seconds),
            min_refresh=float(issuer.jwks_min_refresh_seconds),
            max_refresh=float(issuer.jwks_max_refresh_seconds),
            max_stale=float(issuer.jwks_max_stale_seconds),
            unknown_kid_cooldown=float(issuer.unknown_kid_cooldown_seconds),
            fetcher=fetch,
        )
        source = remote
    if source is not None and wrap_source is not None:
        source = wrap_source(source, issuer.issuer)
    clients = [http]
    introspector = None
    if issuer.introspects:
        clients.append(
            IssuerHttp(ca_file=issuer.ca_file, timeout=issuer.introspection_timeout_ms / 1000)
        )
        introspector = Introspector(
            issuer.issuer,
            auth=_client_auth(issuer),
            http=clients[-1],
            endpoint=issuer.introspection_endpoint,
            metadata=metadata,
            audience=issuer.audiences,
            leeway=leeway,
            client_id_claims=issuer.client_id_claims,
            cache_max=float(issuer.introspection_cache_seconds),
            negative_ttl=float(issuer.introspection_negative_cache_seconds),
        )
    trusted = TrustedIssuer(
        issuer=issuer.issuer,
        source=source,
        audience=issuer.audiences,
        algs=frozenset(issuer.algs),
        introspector=introspector,
        opaque_tokens=issuer.opaque_tokens,
        introspect_jwts=issuer.introspect_jwts,
        metadata=metadata,
        jwt_types=frozenset(normalize_typ(typ) for typ in issuer.jwt_typ),
        require_iat=issuer.require_iat,
        client_id_claims=issuer.client_id_claims,
    )
    return IssuerParts(
        trusted=trusted, clients=tuple(clients), source=source, remote=remote, metadata=metadata
    )
