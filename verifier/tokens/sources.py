"""Where an issuer's verification keys come from: a JWKS file or a JWKS URL.

Fetching happens off the request path: a background task refreshes a URL source, and an unknown
``kid`` triggers at most one refetch per cool-down (concurrent callers share it). The last good
key set is kept when the issuer is unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from verifier.tokens.jwks import InvalidJwks, IssuerKey, parse_jwks

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 512 * 1024


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


def fetch_json(url: str, timeout: float) -> Any:
    """GET ``url`` and parse its JSON body (blocking; run it in a thread)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body = response.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise InvalidJwks("document too large")
    return json.loads(body)


Fetcher = Callable[[str], Awaitable[Any]]


class RemoteKeySource:
    """Keys from a JWKS URL, refreshed in the background.

    ``refresh_interval``: seconds between background refreshes (default 300).
    ``unknown_kid_cooldown``: at most one refetch for unknown ``kid`` values per this many
    seconds (default 30). The last good key set is served while the issuer is unreachable.
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_interval: float = 300.0,
        unknown_kid_cooldown: float = 30.0,
        timeout: float = 5.0,
        fetcher: Fetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"jwks_uri must be an http(s) URL: {url!r}")
        self.url = url
        self._refresh_interval = refresh_interval
        self._cooldown = unknown_kid_cooldown
        self._timeout = timeout
        self._fetcher = fetcher or self._fetch
        self._clock = clock
        self._keys: tuple[IssuerKey, ...] | None = None
        self._last_attempt = float("-inf")
        self._inflight: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_error = ""

    async def _fetch(self, url: str) -> Any:
        return await asyncio.to_thread(fetch_json, url, self._timeout)

    async def _refresh_once(self) -> None:
        self._last_attempt = self._clock()
        try:
            self._keys = parse_jwks(await self._fetcher(self.url))
            self.last_error = ""
        except Exception as exc:  # any failure keeps the last good keys
            self.last_error = type(exc).__name__
            log.warning("jwks fetch failed", extra={"jwks_uri": self.url, "error": self.last_error})

    async def refresh(self) -> None:
        """Fetch now; concurrent callers share one request."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._refresh_once())
        await asyncio.shield(self._inflight)

    async def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        if self._keys is None:
            await self.refresh()
        keys = self._keys
        if keys is None:
            raise KeySourceUnavailable(self.last_error or "no keys")
        found = _matching(keys, kid)
        if not found and kid is not None and self._clock() - self._last_attempt >= self._cooldown:
            await self.refresh()
            found = _matching(self._keys or (), kid)
        return found

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval)
            await self.refresh()

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
