"""The Envoy / Istio external authorizer: ``envoy.service.auth.v3.Authorization/Check``.

CheckRequest -> :class:`RequestFacts` (:mod:`verifier.doors.extauthz_facts`) -> engine ->
CheckResponse. It holds no verification logic of its own.

* **Allow**: ``status`` OK and an ``OkHttpResponse`` that sets the identity headers for the
  upstream (key thumbprint, subject, client id, scope, issuer; names configurable) and removes
  any of them the client sent itself, so they cannot be spoofed. A fresh ``DPoP-Nonce``, when the
  engine offers one, goes back to the client.
* **Deny**: a non-OK ``status`` (``UNAUTHENTICATED`` for 401) and a ``DeniedHttpResponse`` with the
  decision's HTTP status, ``WWW-Authenticate``, ``DPoP-Nonce`` when challenging,
  ``Cache-Control: no-store`` and a JSON body ``{"error", "error_description"}``. Never OK with a
  denial, and never ``error_response`` (which Envoy's ``failure_mode_allow`` would let through).
* **Report-only**: a would-be denial is allowed, logged, and announced to the upstream in the
  report-only header (``x-dpop-report-only: <reason code>``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from google.rpc import code_pb2, status_pb2  # type: ignore[import-untyped]

from verifier._generated.envoy.config.core.v3 import base_pb2
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier._generated.envoy.type.v3 import http_status_pb2
from verifier.domain.model import Decision, RequestFacts, TokenClaims
from verifier.domain.ports import TelemetrySink
from verifier.domain.reasons import Reason, info
from verifier.doors.answers import IdentityHeaders, denial, upstream_headers
from verifier.doors.client_certificate import FAPI_INTERACTION_ID, ClientCertificateOptions
from verifier.doors.extauthz_facts import Headers, check_request_facts, request_headers
from verifier.doors.fail_closed import decide, log_report_only
from verifier.doors.target_uri import PublicUrlOptions
from verifier.doors.verify import DecisionEngine

__all__ = [
    "CHECK_METHOD",
    "SERVICE_NAME",
    "ExtAuthzOptions",
    "ExtAuthzService",
    "IdentityHeaders",
    "check_response",
]
from verifier.domain.routes import RouteTable
from verifier.telemetry import Telemetry, trace_headers

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["Authorization"].full_name
"""The fully qualified service name, ``envoy.service.auth.v3.Authorization``."""
CHECK_METHOD = f"{SERVICE_NAME}/Check"

_log = logging.getLogger(__name__)

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


@dataclass(frozen=True, slots=True)
class ExtAuthzOptions:
    """Everything the Check front door needs besides the engine."""

    routes: RouteTable = field(default_factory=RouteTable)
    public_url: PublicUrlOptions = field(default_factory=PublicUrlOptions)
    identity_headers: IdentityHeaders = field(default_factory=IdentityHeaders)
    client_certificate: ClientCertificateOptions = field(default_factory=ClientCertificateOptions)


class ExtAuthzService:
    """The ``envoy.service.auth.v3.Authorization`` servicer."""

    def __init__(
        self,
        engine: DecisionEngine,
        options: ExtAuthzOptions | None = None,
        *,
        telemetry: TelemetrySink | None = None,
    ) -> None:
        self._engine = engine
        self._options = options if options is not None else ExtAuthzOptions()
        self._telemetry = telemetry if telemetry is not None else Telemetry()

    def Check(self, request: pb.CheckRequest, context: Any) -> pb.CheckResponse:
        """Answer one CheckRequest; always returns a response (fail closed)."""
        options = self._options
        sent: Collection[str] = ()
        facts: RequestFacts | None = None
        # The trace continues from the gRPC metadata (Envoy's ext_authz call), else from the
        # HTTP request's own trace headers inside the CheckRequest.
        metadata = context.invocation_metadata() if context is not None else None
        http = request.attributes.request.http
        try:
            headers: Headers | None = request_headers(http)
        except Exception:  # not expected (pure reads of a parsed message); denied below
            headers = None
        with self._telemetry.decision_scope(
            CHECK_METHOD, metadata=metadata or (), headers=trace_headers(headers or {})
        ) as scope:

            def decision_of() -> Decision:
                nonlocal facts, sent
                if headers is None:
                    raise ValueError("the request's headers could not be read")
                sent = headers.keys()
                facts = check_request_facts(
                    request,
                    headers,
                    routes=options.routes,
                    public_url=options.public_url,
                    client_certificate=options.client_certificate,
                )
                scope.facts = facts
                return self._engine.verify(facts)

            decision = decide("check", scope, decision_of)
        if not decision.enforced and facts is not None:
            log_report_only(facts, decision)
        interaction_id = facts.interaction_id if facts is not None else ""
        return check_response(decision, sent, options.identity_headers, interaction_id)


def check_response(
    decision: Decision, sent: Collection[str], names: IdentityHeaders, interaction_id: str = ""
) -> pb.CheckResponse:
    """The wire answer for ``decision``; ``sent`` are the header names the client sent.
    ``interaction_id`` (a ``fapi2`` route's ``x-fapi-interaction-id``) goes back to the client
    and, on an allow, to the upstream."""
    if not decision.allow:
        response = _denied(decision)
        if interaction_id:
            response.denied_response.headers.append(_header(FAPI_INTERACTION_ID, interaction_id))
        return response
    spoofable = tuple(name for name in _identity_names(names) if name in sent)
    nonce = decision.dpop_nonce if decision.enforced else ""  # RFC 9449 §8.2: fresh on success
    cached = _allowed(
        decision.jkt, decision.claims, decision.enforced, decision.reason, names, spoofable, nonce
    )
    if not interaction_id:
        return cached
    response = pb.CheckResponse()
    response.CopyFrom(cached)  # the cached message is shared: never modified
    header = _header(FAPI_INTERACTION_ID, interaction_id)
    response.ok_response.headers.append(header)
    response.ok_response.response_headers_to_add.append(header)
    return response


@functools.lru_cache(maxsize=16)
def _identity_names(names: IdentityHeaders) -> tuple[str, ...]:
    return names.names()


@functools.lru_cache(maxsize=1024)
def _allowed(
    jkt: str,
    claims: TokenClaims | None,
    enforced: bool,
    reason: Reason,
    names: IdentityHeaders,
    spoofable: tuple[str, ...],
    nonce: str,
) -> pb.CheckResponse:
    """The OK answer, from every input it depends on; a client's requests get the same one, so
    it is built once (the server only serializes it: a cached message is never modified)."""
    values = upstream_headers(jkt, claims, enforced, reason, names)
    remove = tuple(sorted(name for name in spoofable if name not in values))
    ok = pb.OkHttpResponse(
        headers=[_header(name, value) for name, value in values.items()], headers_to_remove=remove
    )
    if nonce:
        ok.response_headers_to_add.append(_header("dpop-nonce", nonce))
    return pb.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)


def _denied(decision: Decision) -> pb.CheckResponse:
    answer = denial(decision)
    return pb.CheckResponse(
        status=status_pb2.Status(
            code=int(info(decision.reason).grpc_code),
            message=decision.reason.value,
        ),
        denied_response=pb.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=answer.status),  # type: ignore[arg-type]
            headers=[_header(name, value) for name, value in answer.headers],
            body=answer.body,
        ),
    )


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE
    )
