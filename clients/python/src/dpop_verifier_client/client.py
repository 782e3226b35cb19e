"""The blocking client: one channel, ``verify()`` with a deadline and bounded retries."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import grpc

from dpop_verifier_client._generated.dpop.verifier.v1 import verifier_pb2_grpc
from dpop_verifier_client._generated.dpop.verifier.v1.verifier_pb2 import (
    VerifyRequest,
    VerifyResponse,
)
from dpop_verifier_client._transport import (
    DEFAULT_TIMEOUT,
    TLS,
    Attempts,
    RetryPolicy,
    channel_settings,
)


class VerifierClient:
    """Calls ``dpop.verifier.v1.VerifierService/Verify`` on one verifier address.

    ``target`` is a gRPC target (``host:port``, ``dns:///name:port``, ``unix:path``). Choose the
    transport explicitly: ``tls=TLS(...)`` (``TLS()`` trusts the system roots) or
    ``insecure=True`` for plaintext on loopback or inside an mTLS mesh. ``timeout`` is the
    default deadline of one ``verify`` call in seconds, retries included; ``retry`` says which
    failures are tried again (see :class:`RetryPolicy`). Extra gRPC channel ``options`` win
    over the defaults.

    Thread-safe; reuse one client (one channel) for the life of the process and ``close()`` it
    at the end, or use it as a context manager.
    """

    def __init__(
        self,
        target: str,
        *,
        tls: TLS | None = None,
        insecure: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        options: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        credentials, channel_options = channel_settings(tls, insecure, options)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        stub = verifier_pb2_grpc.VerifierServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._verify = stub.Verify
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    def verify(self, request: VerifyRequest, *, timeout: float | None = None) -> VerifyResponse:
        """The verifier's answer for ``request``: allow or deny with a reason.

        A deny is a normal answer (check ``is_allowed`` or ``response.decision``). Raises
        :class:`VerifierError` when no answer came within ``timeout`` seconds (default: the
        client's) and the retries; the caller must then deny the request.
        """
        attempts = Attempts(self.retry, self.timeout if timeout is None else timeout)
        while True:
            try:
                response: VerifyResponse = self._verify(request, timeout=attempts.next())
                return response
            except grpc.RpcError as exc:
                time.sleep(attempts.failed(exc))

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> VerifierClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
