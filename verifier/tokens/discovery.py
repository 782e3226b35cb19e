"""Authorization server metadata: RFC 8414 and OpenID Connect Discovery 1.0.

An issuer's metadata is read from ``{issuer}/.well-known/oauth-authorization-server`` (RFC 8414
§3.1, the well-known segment inserted before the issuer's path) and, failing that, from
``{issuer}/.well-known/openid-configuration`` (OIDC Discovery §4), or from one configured URL.
The document's ``issuer`` must equal the configured issuer exactly (RFC 8414 §3.3, OIDC Discovery
§4.3); a document naming another issuer is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from verifier.tokens.http import Fetched, HTTPError, endpoint_url_problem
from verifier.tokens.single_flight import SingleFlight

log = logging.getLogger(__name__)

WELL_KNOWN_OAUTH = "/.well-known/oauth-authorization-server"
WELL_KNOWN_OIDC = "/.well-known/openid-configuration"

Fetcher = Callable[[str], Fetched]
"""GET a URL and return its JSON object (blocking; any thread); raise on any failure."""


class MetadataInvalid(ValueError):
    """The metadata document is unusable (a member of the wrong type, a non-https endpoint)."""


class IssuerMismatch(MetadataInvalid):
    """The metadata names another issuer than the configured one (RFC 8414 §3.3)."""


class MetadataUnavailable(Exception):
    """No metadata could be obtained (and none is cached)."""


@dataclass(frozen=True, slots=True)
class IssuerMetadata:
    """What this service uses of an authorization server's metadata."""

    issuer: str
    url: str
    """Where the metadata was read."""
    jwks_uri: str = ""
    introspection_endpoint: str = ""
    dpop_algs: tuple[str, ...] | None = None
    """``dpop_signing_alg_values_supported`` (RFC 9449 §5.1); None when not advertised."""


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """The well-known metadata URLs of ``issuer``, RFC 8414 first, then OIDC Discovery."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oauth = urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN_OAUTH + path, "", ""))
    oidc = issuer.rstrip("/") + WELL_KNOWN_OIDC
    return (oauth, oidc)


def _endpoint(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MetadataInvalid(f"{name} must be a string")
    problem = endpoint_url_problem(value)
    if problem:
        raise MetadataInvalid(f"{name} {problem}")
    return value


def parse_metadata(document: dict[str, Any], *, issuer: str, url: str) -> IssuerMetadata:
    """Check ``document`` (read from ``url``) against the configured ``issuer``."""
    if document.get("issuer") != issuer:
        raise IssuerMismatch(f"{url} names issuer {str(document.get('issuer'))[:200]!r}")
    algs = document.get("dpop_signing_alg_values_supported")
    if algs is not None and (
        not isinstance(algs, list) or not all(isinstance(alg, str) for alg in algs)
    ):
        raise MetadataInvalid("dpop_signing_alg_values_supported must be an array of strings")
    return IssuerMetadata(
        issuer=issuer,
        url=url,
        jwks_uri=_endpoint(document, "jwks_uri"),
        introspection_endpoint=_endpoint(document, "introspection_endpoint"),
        dpop_algs=tuple(algs) if algs is not None else None,
    )


class IssuerMetadataSource:
    """An issuer's metadata, read on first use and again every ``refresh_interval`` seconds.

    ``metadata_url``: read only this URL (default: the two well-known URLs, in order).
    ``refresh_interval``: seconds between re-reads (default 3600). ``retry_interval``: after a
    failure, no new attempt for this many seconds (default 5). The last good metadata is kept
    while the issuer is unreachable. Thread-safe: concurrent callers share one read.
    """

    def __init__(
        self,
        issuer: str,
        fetch: Fetcher,
        *,
        metadata_url: str = "",
        refresh_interval: float = 3600.0,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.urls = (metadata_url,) if metadata_url else metadata_urls(issuer)
        self._fetch = fetch
        self._refresh_interval = refresh_interval
        self._retry_interval = retry_interval
        self._clock = clock
        self.metadata: IssuerMetadata | None = None
        self._fetched_at = float("-inf")
        self._flight = SingleFlight(self._read, clock)
        self.last_error = ""

    def current(self) -> IssuerMetadata:
        """The metadata, read now if due (blocking); raise :class:`MetadataUnavailable` if
        there is none."""
        if self.metadata is None or self._clock() - self._fetched_at >= self._refresh_interval:
            self._flight.run(self._retry_interval)
        metadata = self.metadata
        if metadata is None:
            raise MetadataUnavailable(self.last_error or "no metadata")
        return metadata

    def refresh(self) -> None:
        """Read the metadata now (blocking); concurrent callers share one read."""
        self._flight.run()

    def _read(self) -> None:
        errors: list[Exception] = []
        for url in self.urls:
            try:
                metadata = parse_metadata(self._fetch(url).document, issuer=self.issuer, url=url)
            except Exception as exc:  # try the next URL; report the most telling failure
                errors.append(exc)
                continue
            if metadata != self.metadata:
                log.info(
                    "issuer metadata loaded",
                    extra={"issuer": self.issuer, "url": url, "jwks_uri": metadata.jwks_uri},
                )
            self._fetched_at, self.last_error, self.metadata = self._clock(), "", metadata
            return
        mismatch = [e for e in errors if isinstance(e, IssuerMismatch)]
        worst = (
            mismatch[0]
            if mismatch
            else next(
                (e for e in errors if not (isinstance(e, HTTPError) and e.status == 404)),
                errors[-1],
            )
        )
        self.last_error = type(worst).__name__
        if mismatch:
            log.error(
                "issuer metadata refused: it names another issuer",
                extra={"issuer": self.issuer, "error": str(worst)},
            )
        else:
            log.warning(
                "issuer metadata unavailable",
                extra={"issuer": self.issuer, "urls": list(self.urls), "error": self.last_error},
            )
