"""A null ext_authz server: ``Check`` and ``Verify`` answer a constant allow, on the service's
own server stack, so ``bench/run.py`` can state verification's overhead as a ratio.

    .venv/bin/python bench/null_server.py     (DPOP_LISTEN, DPOP_SERVER_THREADS, ... as the service)

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

CHECK_ALLOW = external_auth_pb2.CheckResponse(
    status=status_pb2.Status(code=code_pb2.OK), ok_response=external_auth_pb2.OkHttpResponse()
)
VERIFY_ALLOW = verifier_pb2.VerifyResponse(decision=verifier_pb2.DECISION_ALLOW)


class NullAuthorization(external_auth_pb2_grpc.AuthorizationServicer):
    def Check(self, request: Any, context: Any) -> Any:
        return CHECK_ALLOW


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


def main() -> None:
    settings = load_settings()
    server, stack = build_server(settings)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(NullAuthorization(), server)  # type: ignore[no-untyped-call]
    verifier_pb2_grpc.add_VerifierServiceServicer_to_server(NullVerifier(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(settings.listen)
    if not port:
        raise SystemExit(f"cannot listen on {settings.listen}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"null server stack: {stack}", flush=True)
    print(f"null server listening on {settings.listen.rpartition(':')[0]}:{port}", flush=True)
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
