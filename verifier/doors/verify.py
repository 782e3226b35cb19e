"""The ``dpop.verifier.v1.VerifierService`` front door: VerifyRequest -> RequestFacts -> engine
-> VerifyResponse. It holds no verification logic of its own.

A denial is a successful RPC carrying ``DECISION_DENY``. An unexpected fault is a denial too
(``internal_error``): the RPC never fails open and never surfaces as gRPC ``INTERNAL``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from cryptography.x509.verification import Store

from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.domain.model import Decision, RequestFacts
from verifier.domain.ports import TelemetrySink
from verifier.domain.reasons import Reason
from verifier.domain.routes import RouteTable
from verifier.doors.client_certificate import verify_certificate
from verifier.doors.fail_closed import decide
from verifier.telemetry import Telemetry

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["VerifierService"].full_name
"""The fully qualified service name, ``dpop.verifier.v1.VerifierService``."""
VERIFY_METHOD = f"{SERVICE_NAME}/Verify"

_log = logging.getLogger(__name__)

# Fails at import (so the server never starts) if the proto enum lags the catalogue.
_WIRE_REASON: dict[Reason, str] = {
    reason: pb.Reason.Name(pb.Reason.Value(f"REASON_{reason.name}")) for reason in Reason
}


class DecisionEngine(Protocol):
    """What the front doors need: a decision made on the calling (worker) thread
    (``verifier.engine.pipeline.Verifier``)."""

    def verify(self, facts: RequestFacts, *, explain: bool = False) -> Decision: ...


class VerifyService:
    """The ``VerifierService`` servicer. ``allow_explain`` gates ``VerifyRequest.explain``;
    ``telemetry`` traces, counts and logs each call."""

    def __init__(
        self,
        engine: DecisionEngine,
        *,
        allow_explain: bool = False,
        routes: RouteTable | None = None,
        telemetry: TelemetrySink | None = None,
        certificate_roots: Store | None = None,
    ) -> None:
        self._engine = engine
        self._allow_explain = allow_explain
        self._routes = routes if routes is not None else RouteTable()
        self._roots = certificate_roots
        self._telemetry = telemetry if telemetry is not None else Telemetry()

    def Verify(self, request: pb.VerifyRequest, context: Any) -> pb.VerifyResponse:
        """Answer one VerifyRequest; always returns a response (fail closed)."""
        metadata = context.invocation_metadata() if context is not None else None
        explain = request.explain and self._allow_explain
        with self._telemetry.decision_scope(VERIFY_METHOD, metadata=metadata or ()) as scope:

            def decision_of() -> Decision:
                scope.facts = facts = verify_request_facts(request, self._routes, self._roots)
                return self._engine.verify(facts, explain=explain)

            decision = decide("verify", scope, decision_of)
        return verify_response(decision, explain=explain)


def verify_request_facts(
    request: pb.VerifyRequest, routes: RouteTable | None = None, roots: Store | None = None
) -> RequestFacts:
    """The engine's view of a VerifyRequest, with the policy of the route its target URI
    selects in ``routes`` (the same routes as ``Authorization/Check``; default: ``require``).
    Field validation is the engine's job."""
    target = target_uri(request)
    route = (routes if routes is not None else RouteTable()).resolve(target)
    return RequestFacts(
        method=request.method,
        target_uri=target,
        authorization=tuple(request.authorization),
        dpop=tuple(request.dpop),
        proof_only=request.proof_only,
        client_address=request.client_address,
        route=request.route or route.name,
        policy=route.policy,
        client_certificate=verify_certificate(request.client_certificate, roots),
    )


def target_uri(request: pb.VerifyRequest) -> str:
    """``target_uri`` when set, else ``scheme://authority`` + ``path``, else empty."""
    if request.target_uri:
        return request.target_uri
    if request.scheme and request.authority:
        return f"{request.scheme}://{request.authority}{request.path}"
    return ""


def verify_response(decision: Decision, *, explain: bool = False) -> pb.VerifyResponse:
    """The wire form of ``decision``; ``checks`` only when ``explain``."""
    response = pb.VerifyResponse(
        decision=pb.DECISION_ALLOW if decision.allow else pb.DECISION_DENY,
        reason=_WIRE_REASON[decision.reason],
        reason_code=decision.reason.value,
        message=decision.message,
        rfc_error=decision.rfc_error.value,
        http_status=decision.http_status,
        www_authenticate=decision.www_authenticate,
        dpop_nonce=decision.dpop_nonce,
        enforced=decision.enforced,
        jkt=decision.jkt,
        jti=decision.jti,
        alg=decision.alg,
    )
    if decision.claims is not None:
        response.claims.CopyFrom(
            pb.TokenClaims(
                iss=decision.claims.issuer,
                sub=decision.claims.subject,
                client_id=decision.claims.client_id,
                scope=decision.claims.scope,
                exp=decision.claims.expires_at,
            )
        )
    if explain:
        response.checks.extend(
            pb.CheckResult(name=c.name, passed=c.passed, note=c.note) for c in decision.checks
        )
    return response
