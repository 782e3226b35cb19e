"""Connection settings shared by the sync and asyncio clients: TLS, deadlines and retries."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

log = logging.getLogger("dpop_verifier_client")

DEFAULT_TIMEOUT = 2.0
"""Seconds for one ``verify`` call, retries included."""

# gRPC's own reconnect backoff (1 s initial, 120 s max) would keep a channel failing fast for
# longer than a whole call may take; these let a retry actually reach a restarted verifier.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


@dataclass(frozen=True, slots=True)
class TLS:
    """How to reach a verifier that serves TLS (``DPOP_TLS_CERT_FILE``).

    ``root_certificates`` is the PEM CA bundle that signed the server certificate (``None``:
    the system roots). ``certificate_chain`` and ``private_key`` are this client's PEM
    certificate and key when the server requires mTLS (``DPOP_TLS_CLIENT_CA_FILE``).
    ``server_name`` overrides the name checked against the certificate (default: the host of
    the target).
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        server_name: str | None = None,
    ) -> TLS:
        """Read the PEM files once; ``None`` leaves the matching setting unset."""

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(read(ca_file), read(cert_file), read(key_file), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed call is tried again.

    Only transport failures whose status is in ``codes`` are retried (by default only
    ``UNAVAILABLE``: the verifier could not be reached or was restarting). A deny is an
    answer, never a failure, so it is never retried. Waits grow from ``initial_backoff`` by
    ``multiplier`` up to ``max_backoff`` seconds, with +/-20% jitter, and never run past the
    call's deadline. ``max_attempts`` counts the first try.

    A retry can repeat a request the verifier already accepted when only the answer was lost;
    the repeated proof is then denied as ``replayed``, which fails closed.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.05
    max_backoff: float = 0.5
    multiplier: float = 2.0
    codes: frozenset[grpc.StatusCode] = field(
        default_factory=lambda: frozenset({grpc.StatusCode.UNAVAILABLE})
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and multiplier >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret

    def should_retry(self, code: grpc.StatusCode, attempt: int, delay: float, left: float) -> bool:
        """Whether to try again after ``attempt`` failed with ``code``, ``left`` seconds before
        the deadline."""
        return code in self.codes and attempt < self.max_attempts and delay < left


NO_RETRY = RetryPolicy(max_attempts=1)
"""A policy that never retries."""


class VerifierError(Exception):
    """The verifier gave no answer: the call failed (after any retries). Treat it as a deny.

    ``code`` is the gRPC status of the last attempt (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``,
    ...), ``attempts`` how many attempts were made.
    """

    def __init__(self, code: grpc.StatusCode, details: str, attempts: int) -> None:
        super().__init__(f"verifier call failed: {code.name}: {details} (attempts: {attempts})")
        self.code = code
        self.details = details
        self.attempts = attempts


class Attempts:
    """The deadline and retry bookkeeping of one ``verify`` call, shared by the blocking and
    the asyncio client (which differ only in how they call and wait)::

        attempts = Attempts(policy, timeout)
        while True:
            try:
                return call(timeout=attempts.next())
            except grpc.RpcError as exc:
                sleep(attempts.failed(exc))
    """

    def __init__(self, policy: RetryPolicy, timeout: float) -> None:
        self.policy = policy
        self.deadline = time.monotonic() + timeout
        self.count = 0

    def next(self) -> float:
        """Start an attempt: the seconds it may take; raises :class:`VerifierError`
        (``DEADLINE_EXCEEDED``) when none are left."""
        self.count += 1
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise VerifierError(grpc.StatusCode.DEADLINE_EXCEEDED, "no time left", self.count - 1)
        return left

    def failed(self, exc: grpc.RpcError) -> float:
        """The attempt failed with ``exc``: the seconds to wait before the next one, or raise
        :class:`VerifierError` when the policy does not retry it."""
        code, details = rpc_status(exc)
        delay = self.policy.delay(self.count)
        if not self.policy.should_retry(code, self.count, delay, self.deadline - time.monotonic()):
            raise VerifierError(code, details, self.count) from None
        log.debug("verify attempt %d failed (%s); retrying in %.3fs", self.count, code, delay)
        return delay


def rpc_status(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a failed call."""
    if isinstance(exc, grpc.Call | grpc.aio.AioRpcError):  # AioRpcError is no grpc.Call
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.UNKNOWN, str(exc)


def channel_settings(
    tls: TLS | None, insecure: bool, options: tuple[tuple[str, Any], ...]
) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
    """Credentials (``None``: plaintext) and channel options; one of ``tls``/``insecure``."""
    if (tls is None) == (not insecure):
        raise ValueError("choose exactly one of tls=TLS(...) or insecure=True")
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    if tls is not None and tls.server_name:
        merged["grpc.ssl_target_name_override"] = tls.server_name
    merged.update(options)
    return (tls.credentials() if tls is not None else None), list(merged.items())
