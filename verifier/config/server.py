"""Hosting settings: where the service listens (gRPC, health, metrics, forward-auth HTTP), its
TLS, its limits and threads, shutdown, and the number of worker processes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from verifier.config.values import (
    ConfigError,
    Parser,
    Section,
    check_address,
    check_file,
    check_min,
)

_MINIMUMS = {
    "http_threads": 1,
    "http_idle_timeout_seconds": 1,
}


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ServerSettings(Section):
    """The listeners and how they are run. Checks itself on construction; the bounds that
    depend on the proof sizes are :class:`~verifier.config.Settings`' to check."""

    listen: str = "127.0.0.1:50051"
    health_listen: str = ""
    metrics_listen: str = ""
    http_listen: str = ""
    http_threads: int = 16
    http_idle_timeout_seconds: int = 120
    http_max_header_bytes: int = 65536
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    shutdown_grace_seconds: float = 10.0
    max_message_bytes: int = 262144
    server_threads: int = 16
    max_concurrent_calls: int = 1024
    max_pending_calls: int = 4096
    receive_timeout_ms: int = 5000
    max_streams_per_connection: int = 1024
    max_connections: int = 4096
    keepalive_seconds: int = 20
    keepalive_timeout_seconds: int = 10
    liveness_stall_seconds: int = 30
    workers: int = 1

    PARSERS: ClassVar[Mapping[str, Parser]] = {}

    def __post_init__(self) -> None:
        self._check_listeners()
        for name, minimum in _MINIMUMS.items():
            check_min("DPOP_" + name.upper(), getattr(self, name), minimum)
        self._check_limits()
        self._check_workers()
        self._check_tls()

    @property
    def tls_enabled(self) -> bool:
        """True when the main port serves TLS."""
        return bool(self.tls_cert_file)

    def _check_listeners(self) -> None:
        check_address("DPOP_LISTEN", self.listen, required=True)
        check_address("DPOP_HEALTH_LISTEN", self.health_listen)
        check_address("DPOP_METRICS_LISTEN", self.metrics_listen)
        check_address("DPOP_HTTP_LISTEN", self.http_listen)
        if self.http_listen.startswith("unix:"):
            raise ConfigError("DPOP_HTTP_LISTEN", "must be host:port (an HTTP endpoint)")
        others = (self.listen, self.health_listen, self.metrics_listen)
        if self.http_listen in others and self.http_listen and not self.http_listen.endswith(":0"):
            raise ConfigError("DPOP_HTTP_LISTEN", "must differ from the other listeners")
        if self.metrics_listen.startswith("unix:"):
            raise ConfigError("DPOP_METRICS_LISTEN", "must be host:port (an HTTP endpoint)")
        if (
            self.health_listen
            and self.health_listen == self.listen
            and not self.listen.endswith(":0")
        ):
            raise ConfigError("DPOP_HEALTH_LISTEN", "must differ from DPOP_LISTEN")

    def _check_limits(self) -> None:
        check_min("DPOP_SHUTDOWN_GRACE_SECONDS", self.shutdown_grace_seconds, 0)
        for name in (
            "max_message_bytes",
            "server_threads",
            "max_concurrent_calls",
            "max_pending_calls",
            "receive_timeout_ms",
            "max_streams_per_connection",
            "max_connections",
            "keepalive_seconds",
            "keepalive_timeout_seconds",
            "liveness_stall_seconds",
            "workers",
        ):
            check_min("DPOP_" + name.upper(), getattr(self, name), 1)

    def _check_workers(self) -> None:
        if self.workers > 1 and self.http_listen:
            raise ConfigError(
                "DPOP_WORKERS",
                "more than 1 is not supported with DPOP_HTTP_LISTEN yet: run one process per "
                "container and scale with replicas",
            )
        if self.workers > 1 and "unix:" in (self.listen[:5], self.health_listen[:5]):
            raise ConfigError(
                "DPOP_WORKERS",
                "more than 1 needs TCP listeners (host:port): processes cannot share a unix socket",
            )

    def _check_tls(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            missing = "DPOP_TLS_KEY_FILE" if self.tls_cert_file else "DPOP_TLS_CERT_FILE"
            raise ConfigError(missing, "DPOP_TLS_CERT_FILE and DPOP_TLS_KEY_FILE go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError("DPOP_TLS_CLIENT_CA_FILE", "mTLS needs DPOP_TLS_CERT_FILE as well")
        for setting, path in (
            ("DPOP_TLS_CERT_FILE", self.tls_cert_file),
            ("DPOP_TLS_KEY_FILE", self.tls_key_file),
            ("DPOP_TLS_CLIENT_CA_FILE", self.tls_client_ca_file),
        ):
            if path:
                check_file(setting, path)
