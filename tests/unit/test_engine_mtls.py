"""The engine's sender constraints per route (dpop, mtls, either, none), certificate-bound
tokens (RFC 8705), tokens bound both ways, and the FAPI 2.0 profile's rules."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.unit.helpers import (
    ISSUER,
    NOW,
    RESOURCE_URL,
    assert_allowed,
    assert_denied,
    key,
    make_proof,
    make_token,
    make_verifier,
    proof_key,
    resource_facts,
    small_rsa_key,
    trusted_issuer,
)
from verifier.cli.mint import generate_key, jwks_for
from verifier.domain.model import (
    ClientCertificateFacts,
    Decision,
    Mode,
    Policy,
    Profile,
    RequestFacts,
    SenderConstraint,
)
from verifier.domain.reasons import CATALOGUE, Reason
from verifier.dpop.proof import ProofLimits
from verifier.tokens.introspection import check_introspection
from verifier.tokens.jwks import parse_jwks
from verifier.tokens.sources import StaticKeySource

CERT_DER = b"\x30\x82 the client's certificate (the engine sees its SHA-256 only)"
OTHER_DER = b"\x30\x82 another client's certificate"
CERT = ClientCertificateFacts(sha256=hashlib.sha256(CERT_DER).digest())
OTHER = ClientCertificateFacts(sha256=hashlib.sha256(OTHER_DER).digest())
X5T = base64.urlsafe_b64encode(CERT.sha256).rstrip(b"=").decode()

MTLS = Policy(sender_constraint=SenderConstraint.MTLS)
EITHER = Policy(sender_constraint=SenderConstraint.EITHER)
NONE = Policy(sender_constraint=SenderConstraint.NONE)
FAPI = Policy(sender_constraint=SenderConstraint.EITHER, profile=Profile.FAPI2)


def cert_token(x5t: object = X5T, *, jkt: str | None = None, **kwargs: Any) -> str:
    """A token bound to :data:`CERT_DER` (and to ``jkt`` too when given)."""
    cnf: dict[str, Any] = {"x5t#S256": x5t}
    if jkt is not None:
        cnf["jkt"] = jkt
    return make_token(bound=False, claims={"cnf": cnf}, **kwargs)


def bearer(
    token: str,
    policy: Policy,
    cert: ClientCertificateFacts | None = CERT,
    url: str = RESOURCE_URL,
) -> RequestFacts:
    return RequestFacts(
        method="GET",
        target_uri=url,
        authorization=(f"Bearer {token}",),
        policy=policy,
        client_certificate=cert,
    )


def dpop(
    token: str, policy: Policy, cert: ClientCertificateFacts | None = CERT, **proof: Any
) -> RequestFacts:
    facts = resource_facts(token=token, proof=make_proof(access_token=token, **proof))
    return RequestFacts(
        method=facts.method,
        target_uri=facts.target_uri,
        authorization=facts.authorization,
        dpop=facts.dpop,
        policy=policy,
        client_certificate=cert,
    )


def decide(facts: RequestFacts, **settings: Any) -> Decision:
    return make_verifier(**settings).verify(facts)


@dataclass(frozen=True)
class Case:
    why: str
    reason: Reason
    facts: Any
    settings: tuple[tuple[str, Any], ...] = ()


MTLS_CASES = [
    Case("certificate-bound, another certificate", Reason.CLIENT_CERTIFICATE_MISMATCH,
         lambda: bearer(cert_token(), MTLS, OTHER)),
    Case("certificate-bound, no certificate read", Reason.CLIENT_CERTIFICATE_MISSING,
         lambda: bearer(cert_token(), MTLS, None)),
    Case("certificate-bound, the client sent none", Reason.CLIENT_CERTIFICATE_MISSING,
         lambda: bearer(cert_token(), MTLS, ClientCertificateFacts(
             problem=Reason.CLIENT_CERTIFICATE_MISSING, detail="empty source.certificate"))),
    Case("certificate unreadable", Reason.CLIENT_CERTIFICATE_INVALID,
         lambda: bearer(cert_token(), MTLS, ClientCertificateFacts(
             problem=Reason.CLIENT_CERTIFICATE_INVALID, detail="not a DER X.509 certificate"))),
    Case("certificate from no trusted proxy", Reason.CLIENT_CERTIFICATE_UNTRUSTED,
         lambda: bearer(cert_token(), MTLS, ClientCertificateFacts(
             problem=Reason.CLIENT_CERTIFICATE_UNTRUSTED, detail="no trusted By="))),
    Case("x5t#S256 padded", Reason.CLIENT_CERTIFICATE_MISMATCH,
         lambda: bearer(cert_token(X5T + "="), MTLS)),
    Case("x5t#S256 of 31 bytes", Reason.CLIENT_CERTIFICATE_MISMATCH,
         lambda: bearer(cert_token(X5T[:42]), MTLS)),
    Case("x5t#S256 hex, not base64url", Reason.CLIENT_CERTIFICATE_MISMATCH,
         lambda: bearer(cert_token(CERT.sha256.hex()), MTLS)),
    Case("x5t#S256 not a string", Reason.TOKEN_CLAIMS_INVALID,
         lambda: bearer(cert_token(12), MTLS)),
    Case("unbound token on an mtls route", Reason.TOKEN_NOT_CERTIFICATE_BOUND,
         lambda: bearer(make_token(bound=False), MTLS)),
    Case("DPoP-bound token with its proof on an mtls route", Reason.TOKEN_NOT_CERTIFICATE_BOUND,
         lambda: dpop(make_token(), MTLS)),
    Case("unbound token on an either route", Reason.TOKEN_NOT_SENDER_CONSTRAINED,
         lambda: bearer(make_token(bound=False), EITHER)),
    Case("certificate-bound token as Bearer on a dpop route", Reason.BEARER_NOT_ALLOWED,
         lambda: bearer(cert_token(), Policy())),
    Case("bound both ways, wrong certificate", Reason.CLIENT_CERTIFICATE_MISMATCH,
         lambda: dpop(cert_token(jkt=proof_key().jkt), Policy(), OTHER)),
    Case("bound both ways, wrong proof key", Reason.JKT_MISMATCH,
         lambda: dpop(cert_token(jkt=key("ES256", 3).jkt), EITHER)),
    Case("bound both ways, no proof", Reason.TOKEN_BOUND_SENT_AS_BEARER,
         lambda: bearer(cert_token(jkt=proof_key().jkt), MTLS)),
    # The FAPI 2.0 profile
    Case("fapi2: token in the query", Reason.TOKEN_IN_QUERY,
         lambda: bearer(cert_token(), FAPI, url=RESOURCE_URL + "?a=1&access_token=x")),
    Case("fapi2: token in the query, percent-encoded name", Reason.TOKEN_IN_QUERY,
         lambda: bearer(cert_token(), FAPI, url=RESOURCE_URL + "?acc%65ss_token=x")),
    Case("fapi2: RS256 proof", Reason.PROOF_ALG_NOT_ALLOWED,
         lambda: dpop(make_token(jkt=key("RS256").jkt), FAPI, signer=key("RS256"))),
    Case("fapi2: ES384 proof", Reason.PROOF_ALG_NOT_ALLOWED,
         lambda: dpop(make_token(jkt=key("ES384").jkt), FAPI, signer=key("ES384"))),
    Case("fapi2: EdDSA proof with an Ed448 key", Reason.PROOF_ALG_NOT_ALLOWED,
         lambda: dpop(make_token(jkt=ED448.jkt), FAPI, signer=ED448)),
    Case("fapi2: proof iat 60 s ahead", Reason.PROOF_IAT_IN_FUTURE,
         lambda: dpop(make_token(), FAPI, iat=NOW + 60)),
    Case("fapi2: proof iat 60 s ahead, configured skew 120 s", Reason.PROOF_IAT_IN_FUTURE,
         lambda: dpop(make_token(), FAPI, iat=NOW + 60), (("limits", "skew120"),)),
    Case("fapi2: RS256 token", Reason.TOKEN_ALG_NOT_ALLOWED,
         lambda: dpop(make_token(signer=RS_ISSUER), FAPI), (("issuers", "rs256"),)),
    Case("fapi2: unbound token, route allows Bearer", Reason.TOKEN_NOT_SENDER_CONSTRAINED,
         lambda: bearer(make_token(bound=False),
                        Policy(Mode.ALLOW_BEARER, sender_constraint=SenderConstraint.EITHER,
                               profile=Profile.FAPI2))),
    Case("fapi2: RSA 1024 proof key", Reason.PROOF_JWK_INVALID,
         lambda: dpop(make_token(jkt=small_rsa_key().jkt), FAPI,
                      signer=replace_alg(small_rsa_key(), "PS256"))),
    Case("issuer not on the route's list", Reason.TOKEN_ISSUER_NOT_ALLOWED,
         lambda: dpop(make_token(), Policy(issuers=("https://other.example",)))),
]  # fmt: skip

ED448 = replace(generate_key("Ed448"), alg="EdDSA")
RS_ISSUER = key("RS256", 5)


def replace_alg(pair: Any, alg: str) -> Any:
    return replace(pair, alg=alg)


def _settings(case: Case) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name, value in case.settings:
        if value == "skew120":
            settings["limits"] = ProofLimits(iat_max_skew=120.0)
        elif value == "rs256":
            source = StaticKeySource(parse_jwks(jwks_for(RS_ISSUER, kid="as-key-1")))
            settings["issuers"] = (trusted_issuer(source=source),)
        else:
            settings[name] = value
    return settings


@pytest.mark.parametrize("case", MTLS_CASES, ids=[c.why for c in MTLS_CASES])
def test_denial(case: Case) -> None:
    decision = decide(case.facts(), **_settings(case))
    assert_denied(decision, case.reason)
    assert decision.http_status == CATALOGUE[case.reason].http_status


# --- allowed ----------------------------------------------------------------------------------


def test_certificate_bound_token_with_its_certificate() -> None:
    for policy in (MTLS, EITHER, NONE):
        decision = decide(bearer(cert_token(), policy))
        assert_allowed(decision)
        assert decision.claims is not None and decision.claims.x5t_s256 == X5T
        assert decision.jkt == ""  # no proof was needed


def test_each_mechanism_on_an_either_route() -> None:
    assert_allowed(decide(dpop(make_token(), EITHER)))
    assert_allowed(decide(bearer(cert_token(), EITHER)))


def test_dpop_route_unchanged() -> None:
    assert_allowed(decide(dpop(make_token(), Policy(), cert=None)))
    assert_denied(decide(bearer(make_token(bound=False), Policy())), Reason.BEARER_NOT_ALLOWED)


def test_token_bound_both_ways_passes_with_both_on_every_route() -> None:
    for policy in (Policy(), MTLS, EITHER, NONE, FAPI):
        assert_allowed(decide(dpop(cert_token(jkt=proof_key().jkt), policy)))
        assert_denied(decide(dpop(cert_token(jkt=proof_key().jkt), policy, None)),
                      Reason.CLIENT_CERTIFICATE_MISSING)  # fmt: skip


def test_unbound_tokens_where_the_route_lets_them_through() -> None:
    assert_allowed(decide(bearer(make_token(bound=False), NONE)))
    allow_bearer_mtls = Policy(Mode.ALLOW_BEARER, sender_constraint=SenderConstraint.MTLS)
    assert_allowed(decide(bearer(make_token(bound=False), allow_bearer_mtls, None)))
    # ... but a bound one is still held to its binding
    assert_denied(decide(bearer(cert_token(), NONE, OTHER)), Reason.CLIENT_CERTIFICATE_MISMATCH)
    assert_denied(decide(bearer(cert_token(), allow_bearer_mtls, OTHER)),
                  Reason.CLIENT_CERTIFICATE_MISMATCH)  # fmt: skip


def test_report_only_reports_mtls_failures() -> None:
    policy = Policy(Mode.REPORT_ONLY, sender_constraint=SenderConstraint.MTLS)
    decision = decide(bearer(cert_token(), policy, OTHER))
    assert (decision.allow, decision.enforced) == (True, False)
    assert decision.reason is Reason.CLIENT_CERTIFICATE_MISMATCH
    unbound = decide(bearer(make_token(bound=False), policy))
    assert (unbound.allow, unbound.enforced, unbound.reason) == (
        True, False, Reason.TOKEN_NOT_CERTIFICATE_BOUND)  # fmt: skip


def test_fapi2_allowed_algorithms_and_iat() -> None:
    for alg in ("ES256", "PS256", "EdDSA", "Ed25519"):
        signer = key(alg)
        assert_allowed(decide(dpop(make_token(jkt=signer.jkt), FAPI, signer=signer)))
    assert_allowed(decide(dpop(make_token(), FAPI, iat=NOW + 10)))
    # A configured skew of 5 s is widened to the 10 s the profile accepts on fapi2 routes only.
    narrow = ProofLimits(iat_max_skew=5.0)
    assert_allowed(decide(dpop(make_token(), FAPI, iat=NOW + 10), limits=narrow))
    assert_denied(decide(dpop(make_token(), Policy(), iat=NOW + 10), limits=narrow),
                  Reason.PROOF_IAT_IN_FUTURE)  # fmt: skip


def test_fapi2_query_without_a_token_parameter_passes() -> None:
    url = RESOURCE_URL + "?x_access_token=1&token=2"
    assert_allowed(decide(bearer(cert_token(), FAPI, url=url)))


def test_issuer_allow_list_passes_listed_issuers() -> None:
    assert_allowed(decide(dpop(make_token(), Policy(issuers=("https://x.example", ISSUER)))))


# --- introspection answers (RFC 8705 §3.2: cnf at the top level) ------------------------------


def test_introspection_answer_with_x5t() -> None:
    answer = {"active": True, "iss": ISSUER, "exp": NOW + 60, "token_type": "Bearer",
              "cnf": {"x5t#S256": X5T}}  # fmt: skip
    claims = check_introspection(answer, issuer=ISSUER, audience=None, now=NOW, leeway=0)
    assert (claims.x5t_s256, claims.jkt) == (X5T, "")
    both = {**answer, "token_type": "DPoP", "cnf": {"x5t#S256": X5T, "jkt": proof_key().jkt}}
    claims = check_introspection(both, issuer=ISSUER, audience=None, now=NOW, leeway=0)
    assert (claims.x5t_s256, claims.jkt) == (X5T, proof_key().jkt)
