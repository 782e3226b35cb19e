"""Decision -> CheckResponse: allow with identity headers, deny with the HTTP answer."""

from __future__ import annotations

import json

import pytest
from google.rpc import code_pb2

from verifier._generated.envoy.config.core.v3 import base_pb2
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier.domain.model import Decision, TokenClaims
from verifier.domain.reasons import CATALOGUE, Reason
from verifier.doors.extauthz import IdentityHeaders, check_response

NAMES = IdentityHeaders()
CLAIMS = TokenClaims(
    issuer="https://issuer.test", subject="alice", client_id="app", scope="read", jkt="J"
)


def allow(**kwargs: object) -> Decision:
    fields: dict[str, object] = {"allow": True, "reason": Reason.OK, "message": "ok"}
    fields.update(rfc_error=CATALOGUE[Reason.OK].rfc_error, http_status=200)
    fields.update(kwargs)
    return Decision(**fields)  # type: ignore[arg-type]


def deny(reason: Reason, **kwargs: object) -> Decision:
    info = CATALOGUE[reason]
    return Decision(allow=False, reason=reason, message=info.message + " (internal detail)",
                    rfc_error=info.rfc_error, http_status=info.http_status, **kwargs)  # type: ignore[arg-type]  # fmt: skip


def headers_of(options: list[base_pb2.HeaderValueOption]) -> dict[str, str]:
    assert all(
        o.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD for o in options
    )
    return {o.header.key: o.header.value for o in options}


def test_allow_sets_identity_headers_and_removes_spoofed_ones() -> None:
    sent = {"x-auth-subject", "x-auth-client-id", "x-dpop-report-only", "x-other"}
    response = check_response(allow(jkt="J", claims=CLAIMS), sent, NAMES)
    assert response.status.code == code_pb2.OK and response.HasField("ok_response")
    assert headers_of(list(response.ok_response.headers)) == {
        "x-dpop-jkt": "J", "x-auth-subject": "alice", "x-auth-client-id": "app",
        "x-auth-scope": "read", "x-auth-issuer": "https://issuer.test",
    }  # fmt: skip
    # Headers that are set overwrite the client's; the others the client sent are removed.
    assert list(response.ok_response.headers_to_remove) == ["x-dpop-report-only"]
    assert not response.ok_response.response_headers_to_add


def test_bearer_allow_without_jkt_removes_a_client_jkt() -> None:
    claims = TokenClaims(issuer="i", subject="s")
    response = check_response(allow(claims=claims), {"x-dpop-jkt", "x-auth-scope"}, NAMES)
    assert "x-dpop-jkt" not in headers_of(list(response.ok_response.headers))
    assert sorted(response.ok_response.headers_to_remove) == ["x-auth-scope", "x-dpop-jkt"]


def test_claims_with_control_characters_are_not_forwarded() -> None:
    claims = TokenClaims(issuer="i", subject="alice\r\nx-admin: 1")
    response = check_response(allow(claims=claims), {"x-auth-subject"}, NAMES)
    assert "x-auth-subject" not in headers_of(list(response.ok_response.headers))
    assert list(response.ok_response.headers_to_remove) == ["x-auth-subject"]


def test_fresh_nonce_on_allow_goes_to_the_client() -> None:
    response = check_response(allow(dpop_nonce="N2"), set(), NAMES)
    assert headers_of(list(response.ok_response.response_headers_to_add)) == {"dpop-nonce": "N2"}


def test_report_only_allows_and_tells_the_upstream() -> None:
    decision = deny(Reason.PROOF_HTU_MISMATCH)
    decision = Decision(
        **{
            **{f: getattr(decision, f) for f in decision.__slots__},
            "allow": True,
            "enforced": False,
        }
    )  # type: ignore[arg-type]
    response = check_response(decision, {"x-dpop-jkt"}, NAMES)
    assert response.status.code == code_pb2.OK
    assert headers_of(list(response.ok_response.headers)) == {
        "x-dpop-report-only": "proof_htu_mismatch"
    }
    assert list(response.ok_response.headers_to_remove) == ["x-dpop-jkt"]


def test_configured_names_and_disabled_headers() -> None:
    names = IdentityHeaders(jkt="X-Key", subject="", client_id="x-client")
    response = check_response(allow(jkt="J", claims=CLAIMS), {"x-key", "x-client"}, names)
    assert headers_of(list(response.ok_response.headers)) == {
        "x-key": "J",
        "x-client": "app",
        "x-auth-scope": "read",
        "x-auth-issuer": "https://issuer.test",
    }
    assert not response.ok_response.headers_to_remove


@pytest.mark.parametrize(
    ("reason", "grpc_code", "error"),
    [
        (Reason.PROOF_HTU_MISMATCH, code_pb2.UNAUTHENTICATED, "invalid_dpop_proof"),
        (Reason.TOKEN_BOUND_SENT_AS_BEARER, code_pb2.UNAUTHENTICATED, "invalid_token"),
        (Reason.AUTHORIZATION_MISSING, code_pb2.UNAUTHENTICATED, "unauthorized"),
        (Reason.AUTHORIZATION_MULTIPLE, code_pb2.INVALID_ARGUMENT, "invalid_request"),
        (Reason.REPLAY_STORE_UNAVAILABLE, code_pb2.UNAVAILABLE, "temporarily_unavailable"),
        (Reason.INTERNAL_ERROR, code_pb2.INTERNAL, "server_error"),
    ],
)
def test_every_denial_is_a_non_ok_status_with_a_denied_response(
    reason: Reason, grpc_code: int, error: str
) -> None:
    info = CATALOGUE[reason]
    response = check_response(deny(reason, www_authenticate="DPoP x"), {"x-auth-subject"}, NAMES)
    assert response.status.code == grpc_code != code_pb2.OK
    assert response.WhichOneof("http_response") == "denied_response"
    denied = response.denied_response
    assert denied.status.code == info.http_status
    headers = headers_of(list(denied.headers))
    assert headers["cache-control"] == "no-store" and headers["content-type"] == "application/json"
    assert headers["www-authenticate"] == "DPoP x" and "dpop-nonce" not in headers
    body = json.loads(denied.body)
    assert body == {"error": error, "error_description": info.message}  # never the detail


def test_nonce_challenge_carries_dpop_nonce() -> None:
    response = check_response(
        deny(Reason.NONCE_REQUIRED, dpop_nonce="N1", www_authenticate="DPoP e"), set(), NAMES
    )
    headers = headers_of(list(response.denied_response.headers))
    assert headers["dpop-nonce"] == "N1"
    assert json.loads(response.denied_response.body)["error"] == "use_dpop_nonce"


def test_wire_round_trip() -> None:
    response = check_response(deny(Reason.REPLAYED), set(), NAMES)
    again = pb.CheckResponse.FromString(response.SerializeToString())
    assert again.denied_response.status.code == 401
