"""A small ``Verify`` client for the command line (``dpop-verifier call`` / ``dev request``)."""

from __future__ import annotations

import json
import sys

import grpc
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc as pb_grpc


def call_verify(
    target: str,
    *,
    method: str,
    url: str,
    token: str | None,
    proofs: list[str],
    scheme: str = "DPoP",
    proof_only: bool = False,
    explain: bool = False,
    timeout: float = 5.0,
) -> pb.VerifyResponse:
    """Send one ``Verify`` over a plaintext channel; exit with a message if the call fails."""
    request = pb.VerifyRequest(
        method=method,
        target_uri=url,
        authorization=[f"{scheme} {token}"] if token else [],
        dpop=proofs,
        proof_only=proof_only,
        explain=explain,
    )
    with grpc.insecure_channel(target) as channel:
        try:
            stub = pb_grpc.VerifierServiceStub(channel)  # type: ignore[no-untyped-call]
            response: pb.VerifyResponse = stub.Verify(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise SystemExit(f"error: Verify call to {target} failed: {exc.code().name}") from None
    return response


def print_response(response: pb.VerifyResponse, *, as_json: bool = False) -> None:
    """Print the decision, its reason and headers; the explain table when present."""
    if as_json:
        print(json.dumps(MessageToDict(response, preserving_proto_field_name=True), indent=2))
        return
    out = sys.stdout
    decision = "ALLOW" if response.decision == pb.DECISION_ALLOW else "DENY"
    print(f"decision:          {decision} ({response.reason_code})", file=out)
    print(f"message:           {response.message}", file=out)
    print(f"http status:       {response.http_status}", file=out)
    if response.rfc_error:
        print(f"error:             {response.rfc_error}", file=out)
    if response.www_authenticate:
        print(f"WWW-Authenticate:  {response.www_authenticate}", file=out)
    if response.dpop_nonce:
        print(f"DPoP-Nonce:        {response.dpop_nonce}", file=out)
    if response.jkt:
        print(f"jkt:               {response.jkt}", file=out)
        print(f"jti:               {response.jti}", file=out)
    if response.HasField("claims"):
        c = response.claims
        print(
            f"token:             iss={c.iss} sub={c.sub} client_id={c.client_id} "
            f"scope={c.scope!r} exp={c.exp}",
            file=out,
        )
    if response.checks:
        print("checks:", file=out)
        for check in response.checks:
            mark = "pass" if check.passed else "FAIL"
            print(f"  {mark}  {check.name:<20} {check.note}", file=out)
