"""A client's mistakes are denials with precise reasons, never faults: over real gRPC to a real
service process, as Envoy's ext_authz calls it.

* A ``Host`` with userinfo or an absolute-form path is ``request_invalid``: HTTP 400, logged like
  any other denial (never at ERROR, so no client can fill the error log at will).
* A ``DPoP`` header larger than ``DPOP_MAX_PROOF_BYTES`` but inside ``DPOP_MAX_MESSAGE_BYTES``
  (an Envoy that allows large headers forwards it) is ``proof_too_large`` with its challenge;
  only a message beyond ``DPOP_MAX_MESSAGE_BYTES`` is refused by the transport.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2

from tests.support.service import TestIssuer, running_service
from verifier._generated.envoy.service.auth.v3 import attribute_context_pb2 as attributes
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
from verifier.cli.mint import generate_key, make_proof


def check_request(host: str, path: str, headers: dict[str, str]) -> pb.CheckRequest:
    http = attributes.AttributeContext.HttpRequest(
        method="GET", scheme="https", host=host, path=path, protocol="HTTP/1.1"
    )
    http.headers.update({":authority": host, ":method": "GET", ":path": path, **headers})
    return pb.CheckRequest(
        attributes=attributes.AttributeContext(
            request=attributes.AttributeContext.Request(http=http)
        )
    )


def denied(response: pb.CheckResponse) -> tuple[int, dict[str, str], dict[str, str]]:
    """The HTTP status, headers and JSON body Envoy would send to the client."""
    assert response.HasField("denied_response"), response
    answer = response.denied_response
    headers = {h.header.key.lower(): h.header.value for h in answer.headers}
    return int(answer.status.code), headers, json.loads(answer.body)


@pytest.fixture
def issuer(tmp_path: Path) -> TestIssuer:
    return TestIssuer(tmp_path)


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("user:secret@api.test", "/orders"),  # userinfo in Host
        ("api.test", "https://api.test/orders"),  # absolute-form request target
        ("api.test", "orders"),  # no leading slash
    ],
    ids=["host-userinfo", "absolute-form-path", "relative-path"],
)
def test_unusable_request_metadata_is_a_400_logged_as_a_denial(
    tmp_path: Path, issuer: TestIssuer, host: str, path: str
) -> None:
    client = generate_key("ES256")
    token = issuer.token(client)
    headers = {
        "authorization": f"DPoP {token}",
        "dpop": make_proof(client, "GET", "https://api.test/orders", access_token=token),
    }
    with running_service(tmp_path, issuer) as service:
        stub = pb_grpc.AuthorizationStub(service.channel)
        response = stub.Check(check_request(host, path, headers), timeout=10)
        service.stop()
    status, answer_headers, body = denied(response)
    assert response.status.code == code_pb2.INVALID_ARGUMENT
    assert (status, body["error"]) == (400, "invalid_request")
    assert "www-authenticate" not in answer_headers  # not about the credentials
    decision = [line for line in service.stderr_lines if '"decision":"deny"' in line]
    assert len(decision) == 1 and '"reason":"request_invalid"' in decision[0]
    assert not [
        line for line in service.stderr_lines if " ERROR " in line or '"level":"ERROR"' in line
    ]


def test_a_dpop_header_over_its_cap_is_a_precise_denial_with_a_challenge(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    client = generate_key("ES256")
    token = issuer.token(client)
    huge = "e" * 170_000  # an Envoy with max_request_headers_kb raised forwards it
    headers = {"authorization": f"DPoP {token}", "dpop": huge}
    with running_service(tmp_path, issuer) as service:
        stub = pb_grpc.AuthorizationStub(service.channel)
        response = stub.Check(check_request("api.test", "/orders", headers), timeout=10)
        beyond = check_request("api.test", "/orders", {**headers, "dpop": "e" * 300_000})
        with pytest.raises(grpc.RpcError) as refused:
            stub.Check(beyond, timeout=10)
    status, answer_headers, body = denied(response)
    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert (status, body["error"]) == (401, "invalid_dpop_proof")
    assert answer_headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')
    assert '"reason":"proof_too_large"' in "".join(service.stderr_lines)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
