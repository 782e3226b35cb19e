"""Each front door's client certificate (RFC 8705) and the FAPI interaction id: what reaches
the engine's RequestFacts, from real certificates made by the test PKI."""

from __future__ import annotations

import hashlib
import urllib.parse
from pathlib import Path

import pytest

from tests.support.mtls_pki import PROXY_URI, MtlsPki, make_mtls_pki
from tests.unit.test_extauthz_facts import check_request
from verifier._generated.dpop.verifier.v1 import verifier_pb2
from verifier.domain.model import ClientCertificateFacts, Policy, Profile, denied
from verifier.domain.reasons import Reason
from verifier.domain.routes import parse_routes
from verifier.doors.client_certificate import ClientCertificateOptions, fapi_interaction_id
from verifier.doors.extauthz import ExtAuthzOptions, ExtAuthzService
from verifier.doors.extauthz_facts import check_request_facts, request_headers
from verifier.doors.forward_auth import ForwardAuthOptions, Refusal, forward_auth_facts
from verifier.doors.target_uri import PublicUrlOptions
from verifier.doors.verify import verify_request_facts

ROUTES = parse_routes(
    [{"path_prefix": "/fapi", "sender_constraint": "either", "profile": "fapi2"}],
    default=Policy(),
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> MtlsPki:
    return make_mtls_pki(Path(tmp_path_factory.mktemp("pki")))


def extauthz_facts(
    options: ClientCertificateOptions, *, peer: str = "", headers: dict[str, str] | None = None
) -> ClientCertificateFacts | None:
    request = check_request(headers=headers)
    request.attributes.source.certificate = peer
    facts = check_request_facts(
        request,
        request_headers(request.attributes.request.http),
        routes=ROUTES,
        public_url=PublicUrlOptions(),
        client_certificate=options,
    )
    return facts.client_certificate


def missing(facts: ClientCertificateFacts | None) -> Reason | None:
    assert facts is not None
    return facts.problem


def test_envoy_peer_certificate(pki: MtlsPki) -> None:
    peer = ClientCertificateOptions(extauthz_source="peer")
    facts = extauthz_facts(peer, peer=urllib.parse.quote(pki.client.pem, safe=""))
    assert facts == ClientCertificateFacts(sha256=hashlib.sha256(pki.client.der).digest())
    assert missing(extauthz_facts(peer)) is Reason.CLIENT_CERTIFICATE_MISSING
    assert missing(extauthz_facts(peer, peer="%2D%2Dnot%20pem")) is (
        Reason.CLIENT_CERTIFICATE_INVALID
    )
    assert extauthz_facts(ClientCertificateOptions(extauthz_source="none"), peer="x") is None


def test_xfcc_only_from_a_trusted_proxy(pki: MtlsPki) -> None:
    options = ClientCertificateOptions(
        extauthz_source="xfcc", xfcc_trusted_by=frozenset({PROXY_URI})
    )
    digest = hashlib.sha256(pki.client.der).hexdigest()
    forged = f"By={PROXY_URI};Hash={'0' * 64}"
    header = f"{forged},By={PROXY_URI};Hash={digest}"  # the last trusted element counts
    facts = extauthz_facts(options, headers={"x-forwarded-client-cert": header})
    assert facts == ClientCertificateFacts(sha256=bytes.fromhex(digest))
    untrusted = f"By=spiffe://dpop.test/other;Hash={digest}"
    facts = extauthz_facts(options, headers={"x-forwarded-client-cert": untrusted})
    assert missing(facts) is Reason.CLIENT_CERTIFICATE_UNTRUSTED
    assert missing(extauthz_facts(options)) is Reason.CLIENT_CERTIFICATE_MISSING


def forward_facts(
    pki_pem: str | None, peer: str = "127.0.0.1", header: str = "x-client-cert"
) -> object:
    headers = {"x-forwarded-method": ("GET",), "x-forwarded-uri": ("/o",), "host": ("api.test",)}
    if pki_pem is not None:
        headers["x-client-cert"] = (pki_pem,)
    options = ForwardAuthOptions(
        client_certificate=ClientCertificateOptions(http_header=header), routes=ROUTES
    )
    return forward_auth_facts(headers, peer, options)


def test_forward_auth_header_from_a_trusted_proxy_only(pki: MtlsPki) -> None:
    escaped = urllib.parse.quote(pki.client.pem, safe="")
    facts = forward_facts(escaped)
    assert not isinstance(facts, Refusal)
    assert facts.client_certificate == ClientCertificateFacts(
        sha256=hashlib.sha256(pki.client.der).digest()
    )
    # An untrusted caller is refused before any header is read.
    assert isinstance(forward_facts(escaped, peer="192.0.2.9"), Refusal)
    for absent in (None, "", "(null)"):
        facts = forward_facts(absent)
        assert not isinstance(facts, Refusal)
        assert missing(facts.client_certificate) is Reason.CLIENT_CERTIFICATE_MISSING
    facts = forward_facts(escaped, header="")  # no header configured: nothing is read
    assert not isinstance(facts, Refusal) and facts.client_certificate is None


def test_verify_takes_the_der(pki: MtlsPki) -> None:
    request = verifier_pb2.VerifyRequest(
        method="GET", target_uri="https://api.test/o", client_certificate=pki.client.der
    )
    facts = verify_request_facts(request)
    assert facts.client_certificate == ClientCertificateFacts(
        sha256=hashlib.sha256(pki.client.der).digest()
    )
    empty = verify_request_facts(verifier_pb2.VerifyRequest(method="GET"))
    assert missing(empty.client_certificate) is Reason.CLIENT_CERTIFICATE_MISSING
    bad = verify_request_facts(verifier_pb2.VerifyRequest(client_certificate=b"\x30\x00"))
    assert missing(bad.client_certificate) is Reason.CLIENT_CERTIFICATE_INVALID


def test_fapi_interaction_id_echoed_or_generated() -> None:
    fapi = Policy(profile=Profile.FAPI2)
    given = "c770aef3-6784-41f7-8e0e-ff5f97bddb3a"
    assert fapi_interaction_id({"x-fapi-interaction-id": (given,)}, fapi) == given
    for bad in ((), ("a\x00b",), ("x" * 200,), (given, given)):
        generated = fapi_interaction_id({"x-fapi-interaction-id": bad}, fapi)
        assert len(generated) == 36 and generated != given
    assert fapi_interaction_id({"x-fapi-interaction-id": (given,)}, Policy()) == ""


class _Deny:
    def verify(self, facts: object, *, explain: bool = False) -> object:
        return denied(Reason.TOKEN_NOT_SENDER_CONSTRAINED)


def test_check_answers_carry_the_interaction_id() -> None:
    service = ExtAuthzService(_Deny(), ExtAuthzOptions(routes=ROUTES))  # type: ignore[arg-type]
    request = check_request(path="/fapi/a", headers={"x-fapi-interaction-id": "id-1"})
    response = service.Check(request, None)
    headers = {h.header.key: h.header.value for h in response.denied_response.headers}
    assert headers["x-fapi-interaction-id"] == "id-1"
    other = service.Check(check_request(path="/other"), None)
    assert "x-fapi-interaction-id" not in {h.header.key for h in other.denied_response.headers}


def test_the_ca_policy_lets_only_certificates_of_the_trusted_ca_bind(pki: MtlsPki) -> None:
    from verifier.mtls.chain import load_trust_roots

    roots = load_trust_roots(pki.ca.pem.encode())
    peer = ClientCertificateOptions(extauthz_source="peer", trust_roots=roots)

    def at_check(identity_pem: str) -> ClientCertificateFacts | None:
        return extauthz_facts(peer, peer=urllib.parse.quote(identity_pem, safe=""))

    assert at_check(pki.client.pem) == ClientCertificateFacts(
        sha256=hashlib.sha256(pki.client.der).digest()
    )
    assert missing(at_check(pki.self_signed.pem)) is Reason.CLIENT_CERTIFICATE_UNTRUSTED
    # Envoy's peer certificate is the leaf alone: a client issued by an intermediate needs the
    # intermediate forwarded (XFCC Chain=, Traefik's chain) or trusted itself.
    assert missing(at_check(pki.chained_client.pem)) is Reason.CLIENT_CERTIFICATE_UNTRUSTED
    header = ClientCertificateOptions(
        http_header="x-client-cert", http_format="pem", trust_roots=roots
    )
    chained = forward_auth_facts_of(header, pki.chained_client.pem + pki.intermediate.pem)
    assert chained == ClientCertificateFacts(sha256=hashlib.sha256(pki.chained_client.der).digest())
    # The same policy at Verify, and off (None) by default: a self-signed certificate binds.
    request = verifier_pb2.VerifyRequest(
        method="GET", target_uri="https://api.test/o", client_certificate=pki.self_signed.der
    )
    assert missing(verify_request_facts(request, None, roots).client_certificate) is (
        Reason.CLIENT_CERTIFICATE_UNTRUSTED
    )
    assert verify_request_facts(request).client_certificate == ClientCertificateFacts(
        sha256=hashlib.sha256(pki.self_signed.der).digest()
    )


def forward_auth_facts_of(options: ClientCertificateOptions, pem: str) -> object:
    from verifier.doors.client_certificate import forward_auth_certificate

    return forward_auth_certificate({"x-client-cert": (pem,)}, options)
