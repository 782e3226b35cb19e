"""The asyncio client: the same contract as :class:`~dpop_verifier_client.VerifierClient`."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

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


class AsyncVerifierClient:
    """Calls ``Verify`` from asyncio code (``grpc.aio``).

    Arguments as for :class:`~dpop_verifier_client.VerifierClient`. Create it inside the running
    event loop, reuse it, and ``await client.close()`` (or ``async with``) at the end.
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
            self._channel = grpc.aio.insecure_channel(target, options=channel_options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=channel_options)
        stub = verifier_pb2_grpc.VerifierServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._verify = stub.Verify
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    async def verify(
        self,
        request: VerifyRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC deadline, as in the sync client
    ) -> VerifyResponse:
        """The verifier's answer for ``request``; raises :class:`VerifierError` when there was
        none (treat it as a deny). Only failures in ``retry.codes`` are retried."""
        attempts = Attempts(self.retry, self.timeout if timeout is None else timeout)
        while True:
            try:
                response: VerifyResponse = await self._verify(request, timeout=attempts.next())
                return response
            except grpc.RpcError as exc:
                await asyncio.sleep(attempts.failed(exc))

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncVerifierClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
