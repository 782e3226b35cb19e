"""A null ext_authz server: ``Check`` and ``Verify`` answer a constant allow, on the service's
own server stack, so ``bench/run.py`` can state verification's overhead as a ratio.

    .venv/bin/python bench/null_server.py     (DPOP_LISTEN, DPOP_SERVER_THREADS, ... as the service)
    .venv/bin/python bench/null_server.py --signature-only
    .venv/bin/python bench/null_server.py --stack aio|uvloop [--signature-only]

``--signature-only`` is the *floor*: ``Check`` verifies the request's ``DPoP`` proof signature
(the one piece of work no verifier can skip or cache: every proof is fresh) with the service's
own primitives, the key imported once per proof header, and nothing else: no claims, no token,
no replay write, no log. A bad or missing proof is denied, so the benchmark (which aborts on any
denial) proves the floor verified every request. No verifier on this stack can be faster.

``--stack`` runs the same handlers on another server stack: ``grpc.aio.server`` on asyncio's
event loop (``aio``) or on uvloop (``uvloop``), so ``bench/run.py`` can compare the stacks the
service could have been built on, with no work (null) and with a signature to verify (floor).

The server comes from ``verifier.server.runtime.create_grpc_server(settings)`` (thread pool and
options exactly as the service's); requests are deserialized by the generated handlers as in
the service, and the prebuilt answer is returned. Prints ``null server listening on HOST:PORT``
and the stack it runs on, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from google.rpc import code_pb2, status_pb2  # type: ignore[import-untyped]

from verifier._generated.dpop.verifier.v1 import verifier_pb2, verifier_pb2_grpc
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from verifier.config import Settings, load_settings
from verifier.jose.rfc7515 import ALGORITHMS, b64url_decode, parse_json_object, verify_signature
from verifier.jose.rfc7517 import public_key_for_alg
from verifier.server.runtime import create_grpc_server

CHECK_ALLOW = external_auth_pb2.CheckResponse(
    status=status_pb2.Status(code=code_pb2.OK), ok_response=external_auth_pb2.OkHttpResponse()
)
VERIFY_ALLOW = verifier_pb2.VerifyResponse(decision=verifier_pb2.DECISION_ALLOW)
CHECK_DENY = external_auth_pb2.CheckResponse(
    status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message="invalid_dpop_proof")
)


class NullAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    def Check(self, request: Any, context: Any) -> Any:
        return CHECK_ALLOW


class SignatureOnly(external_auth_pb2_grpc.AuthorizationServicer):
    """``Check`` = verify the ``DPoP`` header's signature, allow if it holds, else deny."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, Any]] = {}  # proof header (base64url) -> (alg, key)

    def Check(self, request: Any, context: Any) -> Any:
        proof = request.attributes.request.http.headers.get("dpop", "")
        try:
            header_b64, payload_b64, signature_b64 = proof.split(".")
            known = self._keys.get(header_b64)
            if known is None:
                header = parse_json_object(b64url_decode(header_b64))
                alg = header["alg"]
                if alg not in ALGORITHMS:  # the asymmetric allowlist: no "none", no HMAC
                    return CHECK_DENY
                if len(self._keys) >= 4096:
                    self._keys.clear()
                known = self._keys[header_b64] = (alg, public_key_for_alg(header["jwk"], alg))
            signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
            valid = verify_signature(
                known[0], known[1], signing_input, b64url_decode(signature_b64)
            )
        except Exception:  # anything malformed: denied, like the service
            return CHECK_DENY
        return CHECK_ALLOW if valid else CHECK_DENY


class NullVerifier(verifier_pb2_grpc.VerifierServiceServicer):
    def Verify(self, request: Any, context: Any) -> Any:
        return VERIFY_ALLOW


def build_server(settings: Settings) -> tuple[grpc.Server, str]:
    """The service's own server (``create_grpc_server``) and its description."""
    return create_grpc_server(settings), "verifier.server.runtime.create_grpc_server"


STACKS = ("threads", "aio", "uvloop")
"""``threads``: the service's thread-pool ``grpc.server``; ``aio``: ``grpc.aio.server`` on
asyncio's default event loop; ``uvloop``: the same on uvloop. The answers are the same on all."""


class AioAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    """``Check`` on the event loop: the sync handler run inline (it is pure CPU work)."""

    def __init__(self, check: Any) -> None:
        self._check = check

    async def Check(self, request: Any, context: Any) -> Any:
        return self._check.Check(request, context)


class AioVerifier(verifier_pb2_grpc.VerifierServiceServicer):
    async def Verify(self, request: Any, context: Any) -> Any:
        return VERIFY_ALLOW


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signature-only", action="store_true", help="the floor (see above)")
    parser.add_argument("--stack", choices=STACKS, default="threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = load_settings()
    check = SignatureOnly() if args.signature_only else NullAuthorization()
    suffix = " (Check: signature only)" if args.signature_only else ""
    if args.stack != "threads":
        loop_factory = None
        if args.stack == "uvloop":
            import uvloop

            loop_factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve_aio(settings, check, f"grpc.aio.server on {args.stack}{suffix}"))
        return
    server, stack = build_server(settings)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(check, server)  # type: ignore[no-untyped-call]
    verifier_pb2_grpc.add_VerifierServiceServicer_to_server(NullVerifier(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(settings.listen)
    if not port:
        raise SystemExit(f"cannot listen on {settings.listen}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    _announce(f"{stack}{suffix}", settings.listen, port)
    stop.wait()
    server.stop(1).wait()


async def serve_aio(settings: Settings, check: Any, stack: str) -> None:
    """The same handlers on ``grpc.aio.server`` (options and call limit as the service's)."""
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", settings.max_message_bytes)],
        maximum_concurrent_rpcs=settings.max_concurrent_calls,
    )
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AioAuthorization(check), server)  # type: ignore[no-untyped-call]
    verifier_pb2_grpc.add_VerifierServiceServicer_to_server(AioVerifier(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(settings.listen)
    if not port:
        raise SystemExit(f"cannot listen on {settings.listen}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    _announce(stack, settings.listen, port)
    await stop.wait()
    await server.stop(1)


def _announce(stack: str, listen: str, port: int) -> None:
    print(f"null server stack: {stack}", flush=True)
    print(f"null server listening on {listen.rpartition(':')[0]}:{port}", flush=True)


if __name__ == "__main__":
    main()
