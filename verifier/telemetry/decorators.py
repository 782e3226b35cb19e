"""Traced and metered decorators of the engine's ports, and the engine's instrumentation hook.

Each decorator implements the port it wraps, so the engine and the adapters know nothing about
telemetry:

* :class:`TracedReplayStore`: span ``dpop.replay.first_use``, latency by outcome, errors;
* :class:`TracedTokenValidator`: span ``dpop.token.validate``; notes the verified claims on the
  call's :class:`~verifier.telemetry.sink.DecisionScope` (so denials after token validation
  still log issuer and client id);
* :class:`TracedKeySource`: span ``dpop.key_source.keys``; requests that find no keys;
* :func:`traced_fetcher`: span ``dpop.key_source.fetch`` around a key-document fetch, counted as
  a refresh (success or failure);
* :class:`EngineHooks`: span ``dpop.proof.verify`` around the engine's proof checks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from verifier.domain.model import TokenClaims
from verifier.domain.ports import AccessTokenValidator, ReplayStore, ReplayStoreUnavailable
from verifier.domain.reasons import Denial, info
from verifier.domain.uri import redact_url
from verifier.telemetry.sink import (
    ATTR_ALG,
    ATTR_CLIENT_ID,
    ATTR_ISSUER,
    ATTR_JKT_HASH,
    ATTR_REASON,
    Telemetry,
    current_scope,
    hash_jkt,
)
from verifier.telemetry.spans import current_span
from verifier.tokens.http import Fetched
from verifier.tokens.jwks import IssuerKey
from verifier.tokens.sources import KeySource, KeySourceUnavailable

SPAN_PROOF = "dpop.proof.verify"
SPAN_TOKEN = "dpop.token.validate"  # noqa: S105 - a span name
SPAN_KEYS = "dpop.key_source.keys"
SPAN_FETCH = "dpop.key_source.fetch"
SPAN_REPLAY = "dpop.replay.first_use"

ATTR_REPLAY_STORE = "dpop.replay.store"
ATTR_REPLAY_OUTCOME = "dpop.replay.outcome"
ATTR_OUTCOME = "outcome"
ATTR_FAILURE = "failure"
ATTR_ERROR_TYPE = "error.type"


def _deny_on(span: trace.Span, denial: Denial) -> None:
    """Mark a child span with the reason that ended it; faults (5xx) also as an error."""
    if not span.is_recording():
        return
    span.set_attribute(ATTR_REASON, denial.reason.value)
    if info(denial.reason).http_status >= 500:
        span.set_status(Status(StatusCode.ERROR, denial.reason.value))


def _store_kind(store: object) -> str:
    name = type(store).__name__.lower()
    return name.removesuffix("replaystore") or name


class TracedReplayStore:
    """A :class:`~verifier.domain.ports.ReplayStore` whose ``first_use`` is traced and timed."""

    def __init__(self, store: ReplayStore, telemetry: Telemetry) -> None:
        self._store = store
        self._telemetry = telemetry
        self._kind = _store_kind(store)
        self._span_attributes = {ATTR_REPLAY_STORE: self._kind}
        self._labels = {
            outcome: {ATTR_REPLAY_STORE: self._kind, ATTR_REPLAY_OUTCOME: outcome}
            for outcome in ("first_use", "replayed", "unavailable", "error")
        }

    def first_use(self, key: bytes, ttl_seconds: float) -> bool:
        with self._observed() as answer:
            answer.append(self._store.first_use(key, ttl_seconds))
        return answer[0]

    @contextlib.contextmanager
    def _observed(self) -> Iterator[list[bool]]:
        """One replay write's span and metrics; the caller appends the store's answer."""
        started = time.perf_counter()
        outcome = "error"
        with self._telemetry.child_span(SPAN_REPLAY, self._span_attributes, leaf=True) as span:
            answer: list[bool] = []
            try:
                yield answer
                outcome = "first_use" if answer[0] else "replayed"
            except Exception as exc:
                outcome = self._failed(span, exc)
                raise
            finally:
                self._done(span, outcome, started)

    def _failed(self, span: trace.Span, exc: Exception) -> str:
        outcome = "unavailable" if isinstance(exc, ReplayStoreUnavailable) else "error"
        cause = exc.__cause__ or exc
        self._telemetry.instruments.replay_errors.add(
            1, {ATTR_REPLAY_STORE: self._kind, ATTR_ERROR_TYPE: type(cause).__name__}
        )
        if span.is_recording():
            span.set_attribute(ATTR_ERROR_TYPE, type(cause).__name__)
            span.set_status(Status(StatusCode.ERROR, f"replay store {outcome}"))
        return outcome

    def _done(self, span: trace.Span, outcome: str, started: float) -> None:
        if span.is_recording():
            span.set_attribute(ATTR_REPLAY_OUTCOME, outcome)
        self._telemetry.instruments.replay_duration.record(
            time.perf_counter() - started, self._labels[outcome]
        )

    def ping(self) -> bool:
        return self._store.ping()

    def close(self) -> None:
        self._store.close()


class TracedTokenValidator:
    """An access-token validator whose ``validate`` is traced."""

    def __init__(self, validator: AccessTokenValidator, telemetry: Telemetry) -> None:
        self._validator = validator
        self._telemetry = telemetry

    def validate(self, token: str, now: float) -> TokenClaims:
        with self._telemetry.child_span(SPAN_TOKEN) as span:
            try:
                claims = self._validator.validate(token, now)
            except Denial as denial:
                _deny_on(span, denial)
                raise
            _note_claims(span, claims)
            return claims


def _note_claims(span: trace.Span, claims: TokenClaims) -> None:
    scope = current_scope()
    if scope is not None:
        scope.claims = claims
    if span.is_recording():
        if claims.issuer:
            span.set_attribute(ATTR_ISSUER, claims.issuer)
        if claims.client_id:
            span.set_attribute(ATTR_CLIENT_ID, claims.client_id)


class TracedKeySource:
    """A :class:`~verifier.tokens.sources.KeySource` whose key lookups are traced."""

    def __init__(self, source: KeySource, issuer: str, telemetry: Telemetry) -> None:
        self._source = source
        self._issuer = issuer
        self._telemetry = telemetry

    def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        with self._telemetry.child_span(SPAN_KEYS, {ATTR_ISSUER: self._issuer}) as span:
            try:
                keys = self._source.keys(kid)
            except KeySourceUnavailable:
                self._telemetry.instruments.key_failures.add(
                    1, {ATTR_ISSUER: self._issuer, ATTR_FAILURE: "unavailable"}
                )
                if span.is_recording():
                    span.set_status(Status(StatusCode.ERROR, "no keys available"))
                raise
            if span.is_recording():
                span.set_attribute("dpop.key_source.keys_found", len(keys))
            return keys

    async def start(self) -> None:
        await self._source.start()

    async def close(self) -> None:
        await self._source.close()


Fetch = Callable[[str], Fetched]


def traced_fetcher(fetch: Fetch, issuer: str, telemetry: Telemetry) -> Fetch:
    """``fetch`` (a key-document fetcher of a remote key source) traced and counted as a
    refresh: ``outcome=success`` when it returned, ``failure`` when it raised."""
    instruments = telemetry.instruments

    def traced(url: str) -> Fetched:
        attributes = {ATTR_ISSUER: issuer, "url.full": redact_url(url)}
        with telemetry.child_span(SPAN_FETCH, attributes, SpanKind.CLIENT) as span:
            try:
                document = fetch(url)
            except Exception as exc:
                instruments.key_refreshes.add(1, {ATTR_ISSUER: issuer, ATTR_OUTCOME: "failure"})
                instruments.key_failures.add(1, {ATTR_ISSUER: issuer, ATTR_FAILURE: "fetch"})
                if span.is_recording():
                    span.set_attribute(ATTR_ERROR_TYPE, type(exc).__name__)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            instruments.key_refreshes.add(1, {ATTR_ISSUER: issuer, ATTR_OUTCOME: "success"})
            return document

    return traced


class EngineHooks:
    """The engine's :class:`~verifier.engine.pipeline.Instrumentation`: a span per stage."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._names: dict[str, str] = {}

    def stage(self, name: str) -> AbstractContextManager[object]:
        span_name = self._names.get(name)
        if span_name is None:
            span_name = self._names[name] = f"dpop.{name}.verify"
        return _Stage(self._telemetry.child_span(span_name))

    def proof_key(self, alg: str, jkt: str) -> None:
        scope = current_scope()
        if scope is not None:
            scope.alg, scope.jkt, scope.jkt_hash = alg, jkt, ""
        span = current_span()
        if span.is_recording():
            span.set_attribute(ATTR_ALG, alg)
            span.set_attribute(
                ATTR_JKT_HASH, scope.hashed_jkt(jkt) if scope is not None else hash_jkt(jkt)
            )


class _Stage:
    """A stage's span; a :class:`Denial` that ends the stage is noted on it."""

    __slots__ = ("_child", "_span")

    def __init__(self, child: AbstractContextManager[trace.Span]) -> None:
        self._child = child
        self._span: trace.Span = trace.INVALID_SPAN

    def __enter__(self) -> trace.Span:
        self._span = self._child.__enter__()
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, Denial):
            _deny_on(self._span, exc)
        self._child.__exit__(exc_type, exc, tb)
