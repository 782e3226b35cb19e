"""Where an issuer's verification keys come from: a JWKS file, a JWKS URL, or discovery.

Fetching happens off the request path: a background task refreshes a remote source before its
keys' lifetime (``Cache-Control: max-age``, bounded) runs out, and an unknown ``kid`` triggers at
most one refetch per cool-down (concurrent callers share it). The last good key set is kept while
the issuer is unreachable, for a bounded time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from verifier.tokens.discovery import IssuerMetadataSource, MetadataInvalid
from verifier.tokens.http import Fetched, IssuerHttp
from verifier.tokens.jwks import InvalidJwks, IssuerKey, parse_jwks

log = logging.getLogger(__name__)


class KeySourceUnavailable(Exception):
    """No key set could be obtained (and none is cached)."""


class KeySource(Protocol):
    """An issuer's verification keys."""

    async def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        """The keys that may have signed a token with this ``kid`` (all keys when None)."""
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

    async def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        return _matching(self._keys, kid)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


Fetcher = Callable[[str], Awaitable[Any]]
"""GET a URL and return its JSON (a :class:`~verifier.tokens.http.Fetched`, or the bare
document); raise on any failure."""


@dataclass(slots=True)
class SourceCounters:
    """Running totals of a remote source, for metrics (read them; never reset)."""

    fetches: int = 0
    """Key-set fetches that succeeded."""
    fetch_failures: int = 0
    """Key-set fetches that failed (network, HTTP status, document, discovery)."""
    unknown_kid_refetches: int = 0
    """Fetches triggered by a token whose ``kid`` was not in the key set."""
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


class RemoteKeySource:
    """Keys from a JWKS URL (or the ``jwks_uri`` of discovered metadata), kept fresh.

    A key set lives for its ``Cache-Control: max-age`` clamped to [``min_refresh``,
    ``max_refresh``] seconds (``refresh_interval`` when the server sends none; defaults 60,
    3600, 300). A background task fetches again once 80% of that lifetime has passed; after a
    failure it retries after ``retry_min`` seconds, doubling up to the lifetime. An unknown
    ``kid`` triggers at most one fetch per ``unknown_kid_cooldown`` seconds (default 30);
    concurrent callers share every fetch. While fetches fail, the last good key set is served
    until ``max_stale`` seconds past its lifetime (default 6 h); then lookups fail with
    :class:`KeySourceUnavailable` until a fetch succeeds. :attr:`counters` and :meth:`status`
    make this visible.
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
        self._keys: tuple[IssuerKey, ...] | None = None
        self._fetched_at = float("-inf")
        self._lifetime = refresh_interval
        self._last_attempt = float("-inf")
        self._failures = 0
        self._inflight: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
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

    async def _jwks_uri(self) -> str:
        if self._metadata is None:
            return self.url
        jwks_uri = (await self._metadata.current()).jwks_uri
        if not jwks_uri:
            raise MetadataInvalid("the issuer's metadata has no jwks_uri")
        self.url = jwks_uri
        return jwks_uri

    async def _refresh_once(self) -> None:
        try:
            result = await self._fetcher(await self._jwks_uri())
            fetched = result if isinstance(result, Fetched) else Fetched(result)
            keys = parse_jwks(fetched.document)
        except Exception as exc:  # any failure keeps the last good keys
            self._failures += 1
            self.counters.fetch_failures += 1
            self.last_error = type(exc).__name__
            log.warning(
                "jwks fetch failed; keeping the last good keys",
                extra={
                    "key_source": self.label,
                    "error": self.last_error,
                    "consecutive_failures": self._failures,
                    "cached_keys": len(self._keys or ()),
                },
            )
            return
        if self._failures:
            log.info("jwks fetch recovered", extra={"key_source": self.label})
        self._keys, self._fetched_at = keys, self._clock()
        self._lifetime = self._lifetime_of(fetched.max_age)
        self._failures, self.last_error, self._expired_logged = 0, "", False
        self.counters.fetches += 1

    async def refresh(self) -> None:
        """Fetch now; concurrent callers share one request."""
        if self._inflight is None or self._inflight.done():
            self._last_attempt = self._clock()
            self._inflight = asyncio.ensure_future(self._refresh_once())
        await asyncio.shield(self._inflight)

    def _usable(self, now: float) -> bool:
        """Keys exist and are within their lifetime plus ``max_stale``."""
        if self._keys is None:
            return False
        if now - self._fetched_at <= self._lifetime + self._max_stale:
            return True
        if not self._expired_logged:
            self._expired_logged = True
            log.error(
                "jwks older than its lifetime plus max_stale: refusing the issuer's tokens",
                extra={"key_source": self.label, "error": self.last_error},
            )
        return False

    async def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        now = self._clock()
        if not self._usable(now):
            if self._fetching() or now - self._last_attempt >= self._retry_min:
                await self.refresh()
            now = self._clock()
            if not self._usable(now):
                if self._keys is not None:
                    self.counters.expired_lookups += 1
                raise KeySourceUnavailable(self.last_error or "no keys")
        keys = self._keys or ()
        if now - self._fetched_at > self._lifetime:
            self.counters.stale_lookups += 1
        found = _matching(keys, kid)
        if not found and kid is not None:
            if self._fetching():  # a fetch is under way: its answer may hold the kid
                await self.refresh()
            elif now - self._last_attempt >= self._cooldown:
                self.counters.unknown_kid_refetches += 1
                await self.refresh()
            found = _matching(self._keys or (), kid)
        return found

    def _fetching(self) -> bool:
        return self._inflight is not None and not self._inflight.done()

    def _until_next_refresh(self) -> float:
        now = self._clock()
        if self._failures:
            backoff = self._retry_min * 2.0 ** min(self._failures - 1, 16)
            return self._last_attempt + min(backoff, self._lifetime) - now
        return self._fetched_at + 0.8 * self._lifetime - now

    async def _refresh_loop(self) -> None:
        while True:
            delay = self._until_next_refresh()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            await self.refresh()

    def status(self) -> SourceStatus:
        """The source's state now (for health detail)."""
        now = self._clock()
        usable = self._usable(now)
        age = now - self._fetched_at if self._keys is not None else None
        if self._keys is None:
            state = "empty"
        elif not usable:
            state = "expired"
        else:
            state = "fresh" if now - self._fetched_at <= self._lifetime else "stale"
        return SourceStatus(
            usable=usable,
            state=state,
            keys=len(self._keys or ()),
            age_seconds=age,
            consecutive_failures=self._failures,
            last_error=self.last_error,
        )

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_loop())

    async def close(self) -> None:
        for task in (self._task, self._inflight):
            if task is not None and not task.done():
                task.cancel()
        self._task = None
        if self._http is not None:
            await self._http.close()
