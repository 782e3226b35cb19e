"""The composition root: builds the engine and its adapters from :class:`Settings`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from verifier.app.issuers import IssuerParts, build_issuer
from verifier.app.replay_policy import log_replay_policy
from verifier.config import IssuerSettings, Settings
from verifier.domain.ports import AccessTokenValidator
from verifier.dpop.nonce import NonceKeys
from verifier.dpop.proof import ProofLimits
from verifier.engine.pipeline import EngineSettings, Verifier
from verifier.replay import ReplayStore, open_replay_store
from verifier.telemetry import (
    EngineHooks,
    Telemetry,
    TracedKeySource,
    TracedReplayStore,
    TracedTokenValidator,
    traced_fetcher,
)
from verifier.tokens.discovery import Fetcher
from verifier.tokens.sources import KeySource
from verifier.tokens.validator import TokenValidator

log = logging.getLogger(__name__)


def engine_settings(settings: Settings) -> EngineSettings:
    """The engine's view of the settings."""
    nonce_keys = None
    if settings.nonce_secret:
        nonce_keys = NonceKeys(
            current=settings.nonce_secret,
            previous=settings.nonce_previous_secret or None,
            lifetime=float(settings.nonce_lifetime_seconds),
            step=max(1.0, settings.nonce_lifetime_seconds / 30),
            future_skew=float(settings.iat_max_skew_seconds),
        )
    return EngineSettings(
        proof_algs=settings.proof_algs,
        limits=ProofLimits(
            max_proof_bytes=settings.max_proof_bytes,
            max_jti_chars=settings.max_jti_chars,
            iat_max_age=float(settings.iat_max_age_seconds),
            iat_max_skew=float(settings.iat_max_skew_seconds),
        ),
        max_token_bytes=settings.max_token_bytes,
        nonce_keys=nonce_keys,
        replay_fail_open=settings.replay_fail_open,
    )


def issuer_parts(
    issuer: IssuerSettings, telemetry: Telemetry | None = None, *, leeway: float = 30.0
) -> IssuerParts:
    """The token sources configured for one issuer (key fetches, key lookups and discovery
    traced when ``telemetry`` records anything)."""
    if telemetry is None or not telemetry.enabled:
        return build_issuer(issuer, leeway=leeway)
    traced = telemetry

    def wrap_fetcher(fetch: Fetcher, name: str) -> Fetcher:
        return traced_fetcher(fetch, name, traced)

    def wrap_source(source: KeySource, name: str) -> KeySource:
        return TracedKeySource(source, name, traced)

    return build_issuer(issuer, leeway=leeway, wrap_fetcher=wrap_fetcher, wrap_source=wrap_source)


@dataclass
class App:
    """A built service: the engine plus the adapters whose lifecycle the server owns."""

    settings: Settings
    engine: Verifier
    replay: ReplayStore
    key_sources: tuple[KeySource, ...]
    issuers: tuple[IssuerParts, ...] = field(default=())

    async def start(self) -> None:
        """Load metadata and remote keys, all issuers at once (a failure is logged; the
        sources retry in the background)."""
        await asyncio.gather(*(issuer.start() for issuer in self.issuers))

    async def close(self) -> None:
        for issuer in self.issuers:
            await issuer.close()
        self.replay.close()

    def issuer_health(self) -> dict[str, bool]:
        """Per issuer: can its tokens be checked now (published as gRPC health services)."""
        return {issuer.trusted.issuer: issuer.healthy() for issuer in self.issuers}

    def issuer_status(self) -> list[dict[str, Any]]:
        """Health detail per issuer: key-set state, last fetch/discovery/introspection error."""
        return [issuer.status() for issuer in self.issuers]


def build_app(
    settings: Settings,
    telemetry: Telemetry | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> App:
    """Wire the engine, the token validator and the replay store from ``settings``; with
    ``telemetry``, the ports are wrapped in its traced and metered decorators. ``clock`` is
    the engine's (``dpop-verifier explain --at`` replays a past moment)."""
    leeway = float(settings.token_leeway_seconds)
    parts = tuple(issuer_parts(i, telemetry, leeway=leeway) for i in settings.issuers)
    issuers = [part.trusted for part in parts]
    sources = tuple(part.source for part in parts if part.source is not None)
    if not issuers:
        log.warning("no trusted issuers configured: only proof-only requests can be allowed")
    replay = open_replay_store(
        settings.replay_url,
        username=settings.redis_username or None,
        password=settings.redis_password or None,
        sentinel_username=settings.redis_sentinel_username or None,
        sentinel_password=settings.redis_sentinel_password or None,
        ca_file=settings.redis_ca_file,
        cert_file=settings.redis_cert_file,
        key_file=settings.redis_key_file,
        timeout_s=settings.replay_timeout_ms / 1000,
        wait_replicas=settings.redis_wait_replicas,
        wait_timeout_s=settings.redis_wait_timeout_ms / 1000,
        retries=settings.redis_retries,
        key_prefix=settings.redis_key_prefix.encode(),
        memory_max_entries=settings.memory_replay_max_entries,
    )
    log_replay_policy(settings)
    tokens: AccessTokenValidator = TokenValidator(
        issuers, leeway=float(settings.token_leeway_seconds)
    )
    engine_replay: ReplayStore = replay
    hooks = None
    if telemetry is not None and telemetry.enabled:
        tokens = TracedTokenValidator(tokens, telemetry)
        engine_replay = TracedReplayStore(replay, telemetry)
        hooks = EngineHooks(telemetry)
    engine = Verifier(
        engine_settings(settings),
        tokens=tokens,
        replay=engine_replay,
        instrumentation=hooks,
        clock=clock,
    )
    return App(settings=settings, engine=engine, replay=replay, key_sources=sources, issuers=parts)
