"""A null ext_authz server: ``Check`` and ``Verify`` answer a constant allow, on the service's
own server stack, so ``bench/run.py`` can state verification's overhead as a ratio.

    .venv/bin/python bench/null_server.py     (DPOP_LISTEN, DPOP_SERVER_THREADS, ... as the service)
    .venv/bin/python bench/null_server.py --signature-only

``--signature-only`` is the *floor*: ``Check`` verifies the request's ``DPoP`` proof signature
(the one piece of work no verifier can skip or cache: every proof is fresh) with the service's
own primitives, the key imported once per proof header, and nothing else: no claims, no token,
no replay write, no log. A bad or missing proof is denied, so the benchmark (which aborts on any
denial) proves the floor verified every request. No verifier on this stack can be faster.

The server comes from ``verifier.server.runtime.create_grpc_server(settings)`` (thread pool and
options exactly as the service's); requests are deserialized by the generated handlers as in
the service, and the prebuilt answer is returned. Prints ``null server listening on HOST:PORT``
and the stack it runs on, then serves until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from google.rpc import code_pb2, status_pb2  # type: ignore[import-untyped]

from verifier._generated.dpop.verifier.v1 import verifier_pb2, verifier_pb2_grpc
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from verifier.config import Settings, load_settings
from verifier.dpop.jose import ALGORITHMS, b64url_decode, parse_json_object, verify_signature
from verifier.dpop.jwk import public_key_for_alg

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
    """The service's server (``create_grpc_server``), or, where the runtime has none yet, a
    ``grpc.server`` with a thread pool of ``settings.server_threads``; and its description."""
    try:
        from verifier.server.runtime import create_grpc_server
    except ImportError:
        pool = ThreadPoolExecutor(settings.server_threads)
        server = grpc.server(pool, maximum_concurrent_rpcs=settings.max_concurrent_calls)
        return server, f"grpc.server(ThreadPoolExecutor({settings.server_threads})) (fallback)"
    return create_grpc_server(settings), "verifier.server.runtime.create_grpc_server"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--signature-only"]):
        raise SystemExit("usage: null_server.py [--signature-only]")
    settings = load_settings()
    server, stack = build_server(settings)
    check = SignatureOnly() if args else NullAuthorization()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(check, server)  # type: ignore[no-untyped-call]
    verifier_pb2_grpc.add_VerifierServiceServicer_to_server(NullVerifier(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(settings.listen)
    if not port:
        raise SystemExit(f"cannot listen on {settings.listen}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"null server stack: {stack}{' (Check: signature only)' if args else ''}", flush=True)
    print(f"null server listening on {settings.listen.rpartition(':')[0]}:{port}", flush=True)
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
