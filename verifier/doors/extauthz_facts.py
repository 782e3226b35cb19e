"""Envoy's ``CheckRequest`` -> the engine's :class:`RequestFacts` (pure; no I/O).

What Envoy sends (``attributes.request.http``), and how it is read:

* ``method``, ``scheme``, ``host`` (the ``:authority``) and ``path`` (the request target with its
  query, undecoded); when a field is empty the matching pseudo-header (``:method``,
  ``:scheme``, ``:authority``, ``:path``) in the header map is used.
* ``headers``: lower-case names; Envoy joins repeated headers with a comma. The joined value is
  passed on unchanged, so a ``DPoP`` value with a comma is two proofs (``proof_multiple``) and a
  ``DPoP``/``Bearer`` ``Authorization`` value with a comma is two credentials
  (``authorization_multiple``; see :func:`verifier.dpop.authorization.parse_authorization`).
* ``header_map`` (Envoy's ``encode_raw_headers: true``): every header line separately, so
  duplicates arrive as separate values. Used instead of ``headers`` when present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from verifier._generated.envoy.service.auth.v3 import attribute_context_pb2 as attributes_pb
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier.domain.model import RequestFacts
from verifier.domain.routes import RouteTable
from verifier.doors.client_certificate import (
    ClientCertificateOptions,
    extauthz_certificate,
    fapi_interaction_id,
)
from verifier.doors.target_uri import PublicUrlOptions, public_target_uri

Headers = Mapping[str, tuple[str, ...]]
"""Lower-case header name -> every value received, in order."""


def request_headers(http: attributes_pb.AttributeContext.HttpRequest) -> Headers:
    """Every request header Envoy reported, pseudo-headers included."""
    lines: Iterable[tuple[str, str]]
    if http.HasField("header_map") and http.header_map.headers:
        lines = [
            (entry.key, entry.value or entry.raw_value.decode("utf-8", errors="replace"))
            for entry in http.header_map.headers
        ]
    else:
        lines = dict(http.headers).items()  # copied in C: faster than the map's own .items()
    headers: dict[str, tuple[str, ...]] = {}
    for key, value in lines:
        name = key.lower()
        known = headers.get(name)
        headers[name] = (value,) if known is None else (*known, value)
    return MappingProxyType(headers)


def check_request_facts(
    request: pb.CheckRequest,
    headers: Headers,
    *,
    routes: RouteTable,
    public_url: PublicUrlOptions,
    client_certificate: ClientCertificateOptions | None = None,
) -> RequestFacts:
    """The engine's view of one ``CheckRequest``, with the policy of the route it targets and
    the client certificate (:mod:`verifier.doors.client_certificate`).

    ``headers`` is :func:`request_headers` of the request. Validation is the engine's job: an
    empty method or an unusable target URI is denied there as ``request_invalid``.
    """
    http = request.attributes.request.http

    def first(name: str) -> str:
        values = headers.get(name, ())
        return values[0] if values else ""

    method = http.method or first(":method")
    scheme = http.scheme or first(":scheme")
    authority = http.host or first(":authority") or first("host")
    path = http.path or first(":path")
    target = public_target_uri(scheme, authority, path, headers, public_url)
    route = routes.resolve(target)
    source = request.attributes.source
    cert_options = client_certificate or _DEFAULT_CERTIFICATE_OPTIONS
    return RequestFacts(
        method=method,
        target_uri=target,
        authorization=headers.get("authorization", ()),
        dpop=headers.get("dpop", ()),
        client_address=source.address.socket_address.address,
        route=route.name,
        policy=route.policy,
        client_certificate=extauthz_certificate(source.certificate, headers, cert_options),
        interaction_id=fapi_interaction_id(headers, route.policy),
    )


_DEFAULT_CERTIFICATE_OPTIONS = ClientCertificateOptions()
