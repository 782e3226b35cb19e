"""The forward-auth front door: NGINX ``auth_request``, Traefik ``ForwardAuth``, Caddy
``forward_auth``, HAProxy (docs/gateways.md).

A gateway sends this service an HTTP request that describes the client's request; the answer
decides it. The request is turned into :class:`RequestFacts` (pure functions below), decided by
the same engine as ``Verify`` and ``Check``, and answered as the gateway expects:

* **what was asked**, from the headers each gateway sends:

  ========== ========================================== =========================================
  item       read from (first present wins)             notes
  ========== ========================================== =========================================
  method     ``X-Forwarded-Method``, ``X-Original-Method``  Traefik, Caddy; NGINX as configured
  target     ``X-Forwarded-Uri``, ``X-Original-URI``    path and query, undecoded; both
                                                        present and different: no target
  host       ``X-Forwarded-Host``, ``Host``             the authority the client used
  scheme     ``X-Forwarded-Proto``                      else ``http``
  client     ``X-Forwarded-For`` (last element)         else the gateway's own address
  ========== ========================================== =========================================

  plus the client's ``Authorization`` and ``DPoP`` headers as received. The configured public
  base URLs apply as for ``Check`` (:mod:`verifier.doors.target_uri`); the trusted forwarding
  headers of ``Check`` (``DPOP_TRUSTED_FORWARDED_HEADERS``) do not: here the gateway's own
  headers are the description. A request without a method or a target, or with two different
  ones, is ``request_invalid`` (400), never a guess.
* **who may ask**: only a caller whose address is in ``DPOP_HTTP_TRUSTED_PROXIES``; its
  forwarded headers describe the request the decision is about. Anyone else gets
  ``403 untrusted_proxy`` and no decision.
* **allow**: ``200`` with the identity headers for the gateway to copy upstream, and a fresh
  ``DPoP-Nonce`` when the engine offers one (for the client);
* **deny**: the reason's status (401, 400, 503) with ``WWW-Authenticate``, ``DPoP-Nonce`` when
  challenging, ``Cache-Control: no-store`` and the JSON error body, for the gateway to return
  to the client (:mod:`verifier.doors.answers`).

The WSGI application (:class:`ForwardAuthApp`) runs on the HTTP listener's worker threads
(:mod:`verifier.server.http_listener`) and always answers (fail closed).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from verifier.domain.model import Decision, RequestFacts
from verifier.domain.ports import TelemetrySink
from verifier.domain.routes import RouteTable
from verifier.doors.answers import IdentityHeaders, denial, upstream_headers
from verifier.doors.client_certificate import (
    FAPI_INTERACTION_ID,
    ClientCertificateOptions,
    fapi_interaction_id,
    forward_auth_certificate,
)
from verifier.doors.extauthz_facts import Headers
from verifier.doors.fail_closed import decide, log_report_only
from verifier.doors.target_uri import PublicUrlOptions, public_target_uri
from verifier.doors.verify import DecisionEngine
from verifier.dpop.request import strip_ows
from verifier.telemetry import Telemetry, trace_headers

FORWARD_AUTH_METHOD = "forward_auth"
"""The front door's name in spans, metrics and the decision log (``Verify`` and ``Check`` use
their gRPC method names)."""

_log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip
_NO_STORE = ("cache-control", "no-store")


@dataclass(frozen=True, slots=True)
class ForwardAuthOptions:
    """Everything the forward-auth front door needs besides the engine."""

    trusted_proxies: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    routes: RouteTable = field(default_factory=RouteTable)
    public_url: PublicUrlOptions = field(default_factory=PublicUrlOptions)
    identity_headers: IdentityHeaders = field(default_factory=IdentityHeaders)
    max_header_fields: int = 100
    client_certificate: ClientCertificateOptions = field(default_factory=ClientCertificateOptions)

    def __post_init__(self) -> None:
        # The gateway's own headers say where the request went; the configured public base
        # URLs still apply, but no further forwarding header (Envoy's
        # DPOP_TRUSTED_FORWARDED_HEADERS): a gateway passes a client's Forwarded through.
        if self.public_url.trusted_headers:
            bases = self.public_url.public_base_urls
            object.__setattr__(self, "public_url", PublicUrlOptions(public_base_urls=bases))


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer of the listener itself, given before (and instead of) a decision."""

    status: int
    error: str
    description: str


UNTRUSTED = Refusal(
    403, "untrusted_proxy", "This address is not a trusted proxy (DPOP_HTTP_TRUSTED_PROXIES)."
)
TOO_MANY_FIELDS = Refusal(431, "invalid_request", "The request has too many header fields.")


def trusted(address: str, networks: Iterable[Network]) -> bool:
    """True when ``address`` (the TCP peer) lies in one of ``networks``; an unparseable
    address (e.g. a unix socket peer) is never trusted. IPv4-mapped IPv6 addresses count as
    their IPv4 address."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def environ_headers(environ: Mapping[str, Any]) -> Headers:
    """The request's headers from a WSGI environ: lower-case name -> its value (the server
    joins repeated fields with ``", "``, as Envoy does; see :mod:`verifier.doors.extauthz_facts`
    for how a joined ``DPoP`` or ``Authorization`` value is judged)."""
    headers: dict[str, tuple[str, ...]] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") and isinstance(value, str):
            headers[key[5:].replace("_", "-").lower()] = (value,)
    return MappingProxyType(headers)


def forward_auth_facts(
    headers: Headers, peer: str, options: ForwardAuthOptions
) -> RequestFacts | Refusal:
    """The engine's view of the request a gateway asks about, or the listener's refusal.

    ``peer`` is the address of the TCP peer (the gateway). Validation of what the gateway
    forwarded is the engine's job: an empty method or an unusable target is ``request_invalid``.
    """
    if not trusted(peer, options.trusted_proxies):
        return UNTRUSTED
    if len(headers) > options.max_header_fields:
        return TOO_MANY_FIELDS
    method = _one_of(headers, "x-forwarded-method", "x-original-method")
    uri = _one_of(headers, "x-forwarded-uri", "x-original-uri")
    host = _last_element(headers, "x-forwarded-host") or _first(headers, "host")
    scheme = _last_element(headers, "x-forwarded-proto").lower() or "http"
    target = public_target_uri(scheme, host, uri, headers, options.public_url) if method else ""
    route = options.routes.resolve(target)
    return RequestFacts(
        method=method,
        target_uri=target,
        authorization=headers.get("authorization", ()),
        dpop=headers.get("dpop", ()),
        client_address=_last_element(headers, "x-forwarded-for") or peer,
        route=route.name,
        policy=route.policy,
        # Read only here, after the caller was found trusted (RFC 8705 §2: the gateway's word).
        client_certificate=forward_auth_certificate(headers, options.client_certificate),
        interaction_id=fapi_interaction_id(headers, route.policy),
    )


def allowed_headers(decision: Decision, names: IdentityHeaders) -> list[tuple[str, str]]:
    """The ``200`` answer's headers: identity headers for the upstream, and a fresh
    ``DPoP-Nonce`` for the client when the engine offers one (RFC 9449 §8.2)."""
    values = upstream_headers(
        decision.jkt, decision.claims, decision.enforced, decision.reason, names
    )
    headers = [_NO_STORE, *values.items()]
    if decision.enforced and decision.dpop_nonce:
        headers.append(("dpop-nonce", decision.dpop_nonce))
    return headers


def _with_interaction_id(
    headers: list[tuple[str, str]], facts: RequestFacts
) -> list[tuple[str, str]]:
    if not facts.interaction_id:
        return headers
    return [*headers, (FAPI_INTERACTION_ID, facts.interaction_id)]


class ForwardAuthApp:
    """The WSGI application of the forward-auth listener: any path, any method."""

    def __init__(
        self,
        engine: DecisionEngine,
        options: ForwardAuthOptions | None = None,
        *,
        telemetry: TelemetrySink | None = None,
    ) -> None:
        self._engine = engine
        self._options = options if options is not None else ForwardAuthOptions()
        self._telemetry = telemetry if telemetry is not None else Telemetry()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        options = self._options
        headers = environ_headers(environ)
        facts = forward_auth_facts(headers, str(environ.get("REMOTE_ADDR", "")), options)
        if isinstance(facts, Refusal):
            _log.warning(
                "forward-auth: refused %s from %s",
                facts.error,
                str(environ.get("REMOTE_ADDR", ""))[:64],
            )
            return _answer(start_response, facts.status, [_NO_STORE], _body(facts))
        with self._telemetry.decision_scope(
            FORWARD_AUTH_METHOD, headers=trace_headers(headers), facts=facts
        ) as scope:
            decision = decide("forward-auth", scope, lambda: self._engine.verify(facts))
        if not decision.enforced:
            log_report_only(facts, decision)
        if decision.allow:
            names = options.identity_headers
            headers_out = _with_interaction_id(allowed_headers(decision, names), facts)
            return _answer(start_response, 200, headers_out, b"")
        answer = denial(decision)
        headers_out = _with_interaction_id(list(answer.headers), facts)
        return _answer(start_response, answer.status, headers_out, answer.body.encode())


def _one_of(headers: Headers, preferred: str, other: str) -> str:
    """The value of ``preferred`` or of ``other``; ``""`` when both are present and differ.

    Traefik and Caddy set ``X-Forwarded-*`` and pass a client's ``X-Original-*`` through; NGINX
    sets what its config names (``X-Original-*`` in its own documentation) and passes a client's
    ``X-Forwarded-*`` through. Two different answers mean one of them came from the client:
    the request is ``request_invalid``, never decided on the client's word.
    """
    first, second = _first(headers, preferred), _first(headers, other)
    if first and second and first != second:
        return ""
    return first or second


def _first(headers: Headers, *names: str) -> str:
    """The value of the first of ``names`` present (as received, OWS trimmed)."""
    for name in names:
        values = headers.get(name)
        if values:
            return strip_ows(values[0])
    return ""


def _last_element(headers: Headers, name: str) -> str:
    """The last element of a comma-separated list header: the one the nearest proxy wrote."""
    values = headers.get(name, ())
    items = [strip_ows(item) for value in values for item in value.split(",")]
    return items[-1] if items else ""


def _body(refusal: Refusal) -> bytes:
    return json.dumps(
        {"error": refusal.error, "error_description": refusal.description}, separators=(",", ":")
    ).encode()


def _answer(
    start_response: StartResponse, status: int, headers: list[tuple[str, str]], body: bytes
) -> list[bytes]:
    if body and not any(name == "content-type" for name, _ in headers):
        headers = [*headers, ("content-type", "application/json")]
    headers = [*headers, ("content-length", str(len(body)))]
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [body]
