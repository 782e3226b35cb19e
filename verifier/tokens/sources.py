"""Where an issuer's verification keys come from: a JWKS file, a JWKS URL, or discovery.

A remote source is kept fresh by a daemon thread of its own: it fetches the key set again before
its lifetime (``Cache-Control: max-age``, bounded) runs out, and in between sleeps on a
:class:`threading.Event` that :meth:`RemoteKeySource.close` sets. A thread rather than an
asyncio task, because the fetch is blocking HTTP and a thread can be stopped and joined before
the HTTP client closes. On the request path, :meth:`RemoteKeySource.keys` runs on the caller's
gRPC worker thread: an unknown ``kid`` triggers a refetch at once, unless another unknown ``kid``
already did within the cool-down (the start-up and scheduled fetches do not count: OpenID
Connect Core §10.1.1 expects a verifier to refetch when it meets a new ``kid``). Every fetch,
in the background or on demand, is the same function run through one
:class:`~verifier.tokens.single_flight.SingleFlight`: callers arriving while it runs wait for
it instead of sending their own. The last good key set is kept while the issuer is
unreachable, for a bounded time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from verifier.tokens.discovery import Fetcher, IssuerMetadataSource, MetadataInvalid
from verifier.tokens.http import IssuerHttp
from verifier.tokens.jwks import InvalidJwks, IssuerKey, parse_jwks
from verifier.tokens.single_flight import Flight, SingleFlight

log = logging.getLogger(__name__)


class KeySourceUnavailable(Exception):
    """No key set could be obtained (and none is cached)."""


class KeySource(Protocol):
    """An issuer's verification keys."""

    def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        """The keys that may have signed a token with this ``kid`` (all keys when None).

        Thread-safe; may block on a fetch (bounded by the source's HTTP timeout)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def _matching(keys: tuple[IssuerKey, ...], kid: str | None) -> tuple[IssuerKey, ...]:
    if kid is None:
        return keys
    return tuple(key for key in keys if key.kid == kid)


class StaticKeySource:
    """Keys loaded once, for example from a JWKS file at start-up."""

    def __init__(self, keys: tuple[IssuerKey, ...]) -> None:
        self._keys = keys

    @classmethod
    def from_file(cls, path: str | Path) -> StaticKeySource:
        """Load a JWKS file; raise ``InvalidJwks`` (or OSError) with the path in the message."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(parse_jwks(document))
        except (ValueError, InvalidJwks) as exc:
            raise InvalidJwks(f"{path}: {exc}") from exc

    def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        return _matching(self._keys, kid)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class SourceCounters:
    """Running totals of a remote source, for metrics (read them; never reset)."""

    fetches: int = 0
    """Key-set fetches that succeeded."""
    fetch_failures: int = 0
    """Key-set fetches that failed (network, HTTP status, document, discovery)."""
    unknown_kid_refetches: int = 0
    """Fetches triggered by a token whose ``kid`` was not in the key set."""
    unknown_kid_cooldown_skips: int = 0
    """Lookups of an unknown ``kid`` answered without a fetch: another unknown ``kid`` had
    fetched within the cool-down."""
    stale_lookups: int = 0
    """Lookups answered from a key set past its lifetime (the issuer could not be reached)."""
    expired_lookups: int = 0
    """Lookups refused because the key set was past its lifetime plus ``max_stale``."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A remote source's state, for health detail and logs."""

    usable: bool
    """Keys can be served (fresh, or stale within ``max_stale``)."""
    state: str
    """``fresh``, ``stale`` (past its lifetime, refreshes failing), ``expired`` or ``empty``."""
    keys: int
    age_seconds: float | None
    """Seconds since the last successful fetch (None: never)."""
    consecutive_failures: int
    last_error: str


@dataclass(frozen=True, slots=True)
class _KeySet:
    """The last good key set, replaced as a whole (readers never see half an update)."""

    keys: tuple[IssuerKey, ...]
    fetched_at: float
    lifetime: float


class RemoteKeySource:
    """Keys from a JWKS URL (or the ``jwks_uri`` of discovered metadata), kept fresh.

    A key set lives for its ``Cache-Control: max-age`` clamped to [``min_refresh``,
    ``max_refresh``] seconds (``refresh_interval`` when the server sends none; defaults 60,
    3600, 300). The refresh thread fetches again once 80% of that lifetime has passed; after a
    failure it retries after ``retry_min`` seconds, doubling up to the lifetime. An unknown
    ``kid`` triggers a fetch at once unless another unknown ``kid`` triggered one less than
    ``unknown_kid_cooldown`` seconds ago (default 30); the start-up and scheduled fetches do not
    start that cool-down. Concurrent callers share every fetch. While fetches fail, the last
    good key set is served until ``max_stale`` seconds past its lifetime (default 6 h); then
    lookups fail with :class:`KeySourceUnavailable` until a fetch succeeds (tried at most every
    ``retry_min`` seconds on the request path). :attr:`counters` and :meth:`status` make this
    visible. Thread-safe.
    """

    def __init__(
        self,
        url: str = "",
        *,
        metadata: IssuerMetadataSource | None = None,
        refresh_interval: float = 300.0,
        min_refresh: float = 60.0,
        max_refresh: float = 3600.0,
        unknown_kid_cooldown: float = 30.0,
        max_stale: float = 6 * 3600.0,
        retry_min: float = 5.0,
        timeout: float = 5.0,
        fetcher: Fetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if metadata is None and not url.startswith(("https://", "http://")):
            raise ValueError(f"jwks_uri must be an http(s) URL: {url!r}")
        self.url = url
        self._metadata = metadata
        self._refresh_interval = refresh_interval
        self._min_refresh = min_refresh
        self._max_refresh = max(min_refresh, max_refresh)
        self._cooldown = unknown_kid_cooldown
        self._max_stale = max_stale
        self._retry_min = retry_min
        self._http: IssuerHttp | None = None
        if fetcher is None:
            self._http = IssuerHttp(timeout=timeout)
            fetcher = self._http.get_json
        self._fetcher = fetcher
        self._clock = clock
        self._current: _KeySet | None = None
        self._failures = 0
        self._flight = SingleFlight(self._refresh_once, clock)
        self._unknown_kid_fetched_at = float("-inf")
        """When an unknown ``kid`` last started a fetch (the cool-down counts from it)."""
        self._lock = threading.Lock()
        """Guards the counters and the expiry log flag (the flight serialises the rest)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._expired_logged = False
        self.last_error = ""
        self.counters = SourceCounters()

    @property
    def label(self) -> str:
        """The issuer (discovery) or the JWKS URL, for logs."""
        return self._metadata.issuer if self._metadata is not None else self.url

    def _lifetime_of(self, max_age: float | None) -> float:
        lifetime = self._refresh_interval if max_age is None else max_age
        return min(max(lifetime, self._min_refresh), self._max_refresh)

    def _jwks_uri(self) -> str:
        if self._metadata is None:
            return self.url
        jwks_uri = self._metadata.current().jwks_uri
        if not jwks_uri:
            raise MetadataInvalid("the issuer's metadata has no jwks_uri")
        self.url = jwks_uri
        return jwks_uri

    def _refresh_once(self) -> None:
        try:
            fetched = self._fetcher(self._jwks_uri())
            keys = parse_jwks(fetched.document)
        except Exception as exc:  # any failure keeps the last good keys
            self._failures += 1
            self.last_error = type(exc).__name__
            with self._lock:
                self.counters.fetch_failures += 1
            log.warning(
                "jwks fetch failed; keeping the last good keys",
                extra={
                    "key_source": self.label,
                    "error": self.last_error,
                    "consecutive_failures": self._failures,
                    "cached_keys": len(self._current.keys) if self._current else 0,
                },
            )
            return
        if self._failures:
            log.info("jwks fetch recovered", extra={"key_source": self.label})
        self._current = _KeySet(keys, self._clock(), self._lifetime_of(fetched.max_age))
        self._failures, self.last_error = 0, ""
        with self._lock:
            self._expired_logged = False
            self.counters.fetches += 1

    def refresh(self) -> None:
        """Fetch now (blocking); concurrent callers share one request."""
        self._flight.run()

    def _usable(self, current: _KeySet, now: float) -> bool:
        """The keys are within their lifetime plus ``max_stale``."""
        if now - current.fetched_at <= current.lifetime + self._max_stale:
            return True
        with self._lock:
            first, self._expired_logged = not self._expired_logged, True
        if first:
            log.error(
                "jwks older than its lifetime plus max_stale: refusing the issuer's tokens",
                extra={"key_source": self.label, "error": self.last_error},
            )
        return False

    def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        current = self._current
        if current is None or not self._usable(current, self._clock()):
            self._flight.run(self._retry_min)
            current = self._current
            if current is None or not self._usable(current, self._clock()):
                if current is not None:
                    with self._lock:
                        self.counters.expired_lookups += 1
                raise KeySourceUnavailable(self.last_error or "no keys")
        if self._clock() - current.fetched_at > current.lifetime:
            with self._lock:
                self.counters.stale_lookups += 1
        found = _matching(current.keys, kid)
        if not found and kid is not None:
            found = self._refetch_for(kid)
        return found

    def _claim_unknown_kid_fetch(self, now: float) -> bool:
        """Called under the flight's lock: may an unknown ``kid`` start a fetch now?"""
        if now - self._unknown_kid_fetched_at < self._cooldown:
            return False
        self._unknown_kid_fetched_at = now
        return True

    def _refetch_for(self, kid: str) -> tuple[IssuerKey, ...]:
        """The keys for an unknown ``kid`` after a refetch, if one is allowed.

        A fetch under way may hold the kid: wait for it. If it does not, or none was under
        way, fetch now unless another unknown ``kid`` fetched within the cool-down."""
        found: tuple[IssuerKey, ...] = ()
        for _ in range(2):  # a joined fetch may have started before the key was published
            flight = self._flight.run(may_start=self._claim_unknown_kid_fetch)
            if flight is Flight.STARTED:
                with self._lock:
                    self.counters.unknown_kid_refetches += 1
            current = self._current
            found = _matching(current.keys, kid) if current is not None else ()
            if found or flight is not Flight.JOINED:
                if flight is Flight.SKIPPED:
                    with self._lock:
                        self.counters.unknown_kid_cooldown_skips += 1
                break
        return found

    def _until_next_refresh(self) -> float:
        now, current = self._clock(), self._current
        if self._failures:
            lifetime = current.lifetime if current is not None else self._refresh_interval
            backoff = self._retry_min * 2.0 ** min(self._failures - 1, 16)
            return self._flight.last_started + min(backoff, lifetime) - now
        if current is None:
            return 0.0
        return current.fetched_at + 0.8 * current.lifetime - now

    def _refresh_loop(self) -> None:
        while not self._stop.wait(max(0.0, self._until_next_refresh())):
            if self._until_next_refresh() <= 0:
                self.refresh()

    def status(self) -> SourceStatus:
        """The source's state now (for health detail)."""
        now, current = self._clock(), self._current
        usable = current is not None and self._usable(current, now)
        if current is None:
            state = "empty"
        elif not usable:
            state = "expired"
        else:
            state = "fresh" if now - current.fetched_at <= current.lifetime else "stale"
        return SourceStatus(
            usable=usable,
            state=state,
            keys=len(current.keys) if current is not None else 0,
            age_seconds=now - current.fetched_at if current is not None else None,
            consecutive_failures=self._failures,
            last_error=self.last_error,
        )

    async def start(self) -> None:
        """Load the keys now (a failure is logged; the refresh thread retries), then start the
        refresh thread."""
        await asyncio.to_thread(self.refresh)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh_loop, name=f"jwks-refresh {self.label}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Stop the refresh thread (waiting for a fetch under way), then close the HTTP client
        this source owns."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._http is not None:
            self._http.close()
