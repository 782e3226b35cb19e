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
    """Send one ``Verify`` over a plaintext channel; exit with a message if the call fails.

    The call waits up to ``timeout`` for the service to come up (``wait_for_ready``), so a
    script may start ``dpop-verifier serve &`` and call it on the next line.
    """
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
            response: pb.VerifyResponse = stub.Verify(request, timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise SystemExit(call_failure(target, timeout, exc)) from None
    return response


def call_failure(target: str, timeout: float, exc: grpc.RpcError) -> str:
    """What went wrong with a call, in words, naming the flag to change."""
    code = exc.code()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"error: no answer from {target} (--target) within {timeout:g} s (--timeout): is "
            "`dpop-verifier serve` running there? (`make run` serves on 127.0.0.1:50051)"
        )
    details = exc.details() or ""
    if code is grpc.StatusCode.UNIMPLEMENTED:
        details = "the server there is not a dpop-verifier"
    return f"error: Verify call to {target} (--target) failed: {code.name}: {details}".rstrip(": ")


def print_response(
    response: pb.VerifyResponse, *, as_json: bool = False, explain_asked: bool = False
) -> None:
    """Print the decision, its reason and headers; the explain table when present, and why it
    is absent when it was asked for and the server sent none."""
    if explain_asked and not response.checks:
        print(
            "note: the server sent no checks: it does not honour explain (start it with "
            "DPOP_ALLOW_EXPLAIN=true or allow_explain = true; not for production), or use "
            "`dpop-verifier explain`, which needs no server",
            file=sys.stderr,
        )
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
