"""``dpop-verifier explain``: run the engine in this process on one token and proof, with the
service's configuration, and show every check with its outcome. No server is needed.

The replay check runs against a fresh in-memory store, never the configured one, so explaining a
captured proof does not burn it. ``at`` replays the decision at a past moment (a proof is only
accepted for about a minute after its ``iat``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any, TextIO

from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier.app import build_app
from verifier.app.doors import route_table
from verifier.config import Settings
from verifier.domain.model import Decision, RequestFacts
from verifier.doors import verify as verify_service

REPLAY_NOTE = "replay checked against a fresh in-memory store; the configured store is untouched"


def explain(settings: Settings, facts: RequestFacts, *, at: float | None = None) -> Decision:
    """The engine's decision for ``facts`` with the explain table, as the service would decide
    it now (or at ``at``, seconds since the epoch)."""
    local = dataclasses.replace(settings, replay_url="memory://")
    clock = (lambda: at) if at is not None else time.time
    return asyncio.run(_explain(local, facts, clock))


async def _explain(settings: Settings, facts: RequestFacts, clock: Any) -> Decision:
    app = build_app(settings, clock=clock)
    await app.start()
    try:
        # On a thread, as the server's workers call it (its ports may block on I/O).
        return await asyncio.to_thread(app.engine.verify, facts, explain=True)
    finally:
        await app.close()


def explain_request_facts(
    settings: Settings,
    *,
    method: str,
    url: str,
    token: str | None,
    proofs: list[str],
    scheme: str = "DPoP",
    proof_only: bool = False,
) -> RequestFacts:
    """The facts the ``Verify`` front door would build for this request, with the policy of
    the configured route the URL selects."""
    request = pb.VerifyRequest(
        method=method,
        target_uri=url,
        authorization=[f"{scheme} {token}"] if token else [],
        dpop=proofs,
        proof_only=proof_only,
    )
    return verify_service.verify_request_facts(request, route_table(settings))


def as_dict(decision: Decision) -> dict[str, Any]:
    """The decision as plain JSON-ready values (for ``--json``)."""
    result: dict[str, Any] = {
        "decision": "allow" if decision.allow else "deny",
        "reason": decision.reason.value,
        "message": decision.message,
        "rfc_error": decision.rfc_error.value,
        "http_status": decision.http_status,
        "www_authenticate": decision.www_authenticate,
        "dpop_nonce": decision.dpop_nonce,
        "jkt": decision.jkt,
        "alg": decision.alg,
        "enforced": decision.enforced,
        "checks": [dataclasses.asdict(check) for check in decision.checks],
        "note": REPLAY_NOTE,
    }
    if decision.claims is not None:
        result["claims"] = dataclasses.asdict(decision.claims)
    return result


def print_explanation(
    decision: Decision, out: TextIO, *, facts: RequestFacts | None = None, as_json: bool = False
) -> None:
    """The decision, its headers, the route policy applied and the check-by-check table."""
    if as_json:
        result = as_dict(decision)
        if facts is not None:
            result["route"] = {"name": facts.route, "mode": facts.policy.mode.value}
        print(json.dumps(result, indent=2), file=out)
        return
    verdict = "ALLOW" if decision.allow else "DENY"
    lines = [
        f"decision:          {verdict} ({decision.reason.value})"
        + ("" if decision.enforced else "  [report-only: not enforced]"),
        f"message:           {decision.message}",
        f"http status:       {decision.http_status}",
    ]
    if facts is not None:
        nonce = ", nonce required" if facts.policy.nonce_required else ""
        lines.append(f"route:             {facts.route or '-'} ({facts.policy.mode.value}{nonce})")
    if decision.rfc_error.value:
        lines.append(f"error:             {decision.rfc_error.value}")
    if decision.www_authenticate:
        lines.append(f"WWW-Authenticate:  {decision.www_authenticate}")
    if decision.dpop_nonce:
        lines.append(f"DPoP-Nonce:        {decision.dpop_nonce}")
    if decision.jkt:
        lines.append(f"jkt:               {decision.jkt} (alg {decision.alg})")
    if decision.claims is not None:
        c = decision.claims
        lines.append(
            f"token:             iss={c.issuer} sub={c.subject} client_id={c.client_id} "
            f"scope={c.scope!r} exp={c.expires_at}"
        )
    lines.append("checks:")
    for check in decision.checks:
        mark = "pass" if check.passed else "FAIL"
        lines.append(f"  {mark}  {check.name:<20} {check.note}".rstrip())
    lines.append(f"note: {REPLAY_NOTE}")
    print("\n".join(lines), file=out)
