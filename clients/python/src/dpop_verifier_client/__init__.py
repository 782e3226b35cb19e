"""A typed client for the dpop-verifier service (``dpop.verifier.v1.VerifierService``).

::

    from dpop_verifier_client import VerifierClient, TLS, request_from_wsgi, is_allowed

    verifier = VerifierClient("verifier.internal:50051", tls=TLS.from_files(ca_file="ca.pem"))
    answer = verifier.verify(request_from_wsgi(environ, public_origin="https://api.example.com"))
    if not is_allowed(answer):
        ...  # answer with answer.http_status and response_headers(answer)

:class:`AsyncVerifierClient` is the asyncio twin; :class:`WSGIMiddleware` and
:class:`ASGIMiddleware` do the asking for a whole application. A deny is an answer;
:class:`VerifierError` (no answer at all) must be treated as a deny too.
``dpop_verifier_client.proof.ProofSigner`` signs proofs on the client side (the ``signer``
extra). The package depends on ``grpcio`` and ``protobuf`` only and carries its own stubs.
"""

from dpop_verifier_client._generated.dpop.verifier.v1.verifier_pb2 import (
    Decision,
    Reason,
    VerifyRequest,
    VerifyResponse,
)
from dpop_verifier_client._transport import (
    DEFAULT_TIMEOUT,
    NO_RETRY,
    TLS,
    RetryPolicy,
    VerifierError,
)
from dpop_verifier_client.aio import AsyncVerifierClient
from dpop_verifier_client.client import VerifierClient
from dpop_verifier_client.decision import is_allowed, response_headers
from dpop_verifier_client.http_request import (
    build_request,
    check_public_origin,
    request_from_asgi,
    request_from_wsgi,
)
from dpop_verifier_client.middleware import ANSWER_KEY, ASGIMiddleware, WSGIMiddleware

__all__ = [
    "ANSWER_KEY",
    "DEFAULT_TIMEOUT",
    "NO_RETRY",
    "TLS",
    "ASGIMiddleware",
    "AsyncVerifierClient",
    "Decision",
    "Reason",
    "RetryPolicy",
    "VerifierClient",
    "VerifierError",
    "VerifyRequest",
    "VerifyResponse",
    "WSGIMiddleware",
    "build_request",
    "check_public_origin",
    "is_allowed",
    "request_from_asgi",
    "request_from_wsgi",
    "response_headers",
]
