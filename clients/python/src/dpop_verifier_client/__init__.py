"""A typed client for the dpop-verifier service (``dpop.verifier.v1.VerifierService``).

::

    from dpop_verifier_client import VerifierClient, TLS, request_from_wsgi, is_allowed

    verifier = VerifierClient("verifier.internal:50051", tls=TLS.from_files(ca_file="ca.pem"))
    answer = verifier.verify(request_from_wsgi(environ, public_origin="https://api.example.com"))
    if not is_allowed(answer):
        ...  # answer with answer.http_status and response_headers(answer)

:class:`AsyncVerifierClient` is the asyncio twin; :class:`ProofSigner` makes proofs on the
client side. A deny is an answer; :class:`VerifierError` (no answer at all) must be treated
as a deny too.
"""

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
from dpop_verifier_client.http_request import build_request, request_from_asgi, request_from_wsgi
from dpop_verifier_client.proof import ProofSigner
from verifier._generated.dpop.verifier.v1.verifier_pb2 import (
    Decision,
    Reason,
    VerifyRequest,
    VerifyResponse,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "NO_RETRY",
    "TLS",
    "AsyncVerifierClient",
    "Decision",
    "ProofSigner",
    "Reason",
    "RetryPolicy",
    "VerifierClient",
    "VerifierError",
    "VerifyRequest",
    "VerifyResponse",
    "build_request",
    "is_allowed",
    "request_from_asgi",
    "request_from_wsgi",
    "response_headers",
]
