"""The gRPC server runtime: the Verifier service, Envoy's ext_authz ``Check``, ``grpc.health.v1``
and reflection on one server, with optional TLS / mutual TLS, an optional plaintext health-only
port, replay-store health probing and graceful shutdown on SIGTERM / SIGINT.

Calls are answered by a ``grpc.server`` thread pool (:func:`create_grpc_server`): for this
CPU-bound workload it carries about 1.7x the calls of ``grpc.aio`` on one core (uvloop included;
docs/performance.md), and a call takes a thread only once its request message is in
(:mod:`verifier.server.admission`). The engine runs on those threads, ports included.
:func:`serve` itself runs on an asyncio event loop, which hosts the background work (health
probes, scheduled key refresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2_grpc
from verifier.app.doors import extauthz_options, forward_auth_options, route_table
from verifier.config import Settings
from verifier.domain.model import Decision, RequestFacts
from verifier.doors.extauthz import SERVICE_NAME as EXTAUTHZ_SERVICE_NAME
from verifier.doors.extauthz import ExtAuthzService
from verifier.doors.forward_auth import ForwardAuthApp
from verifier.doors.verify import SERVICE_NAME, DecisionEngine, VerifyService
from verifier.server.admission import AdmissionExecutor
from verifier.server.health import (
    PROBE_INTERVAL_SECONDS,
    PROBE_TIMEOUT_SECONDS,
    Hysteresis,
    StoreEvidence,
    Watchdog,
    store_answers,
)
from verifier.server.http_listener import ForwardAuthListener
from verifier.telemetry import Telemetry

_log = logging.getLogger(__name__)

HEALTH_PROBE_INTERVAL_SECONDS = PROBE_INTERVAL_SECONDS

_HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_HEALTH_SERVICES = ("", SERVICE_NAME, EXTAUTHZ_SERVICE_NAME)  # "" is the server as a whole
REPLAY_STORE_HEALTH_SERVICE = "dpop.verifier.v1.ReplayStore"
"""A health "service" that always follows the replay store, even with DPOP_REPLAY_FAIL_OPEN."""
LIVENESS_HEALTH_SERVICE = "dpop.verifier.v1.Liveness"
"""A health "service" for liveness probes: SERVING from the moment the server answers calls
until its shutdown begins, whatever the replay store and the issuers do (a dependency outage
must not restart pods). Answering it takes gRPC's core, a health thread and the GIL, so a
process whose interpreter or gRPC core is stuck fails it where a TCP check of the port would
still pass. It does not watch the worker pool or the event loop: busy ones are an overload,
not a dead process."""
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthProbe(Protocol):
    """The part of the replay store that health needs (``verifier.domain.ports.ReplayStore``):
    a blocking ``ping`` bounded by the store's own deadline."""

    def ping(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ListeningAddresses:
    """Where the server actually listens (port 0 in the settings resolved to the real port)."""

    main: str
    health: str = ""
    """The plaintext health-only listener, if ``DPOP_HEALTH_LISTEN`` is set."""
    http: str = ""
    """The forward-auth HTTP listener, if ``DPOP_HTTP_LISTEN`` is set."""


MAX_CONNECTION_IDLE_SECONDS = 300
"""A connection without calls for this long is closed with GOAWAY (clients reconnect on
demand), so idle connections cannot hold the DPOP_MAX_CONNECTIONS slots for good."""
STUCK_CALL_WAIT_SECONDS = 1.0
"""After the grace period and the cancellation of every call, how long shutdown waits for the
worker threads to finish what they run before it reports them as stuck."""
HANDSHAKE_TIMEOUT_SECONDS = 10
"""A connection must finish its TLS handshake and HTTP/2 preface within this."""


def server_options(settings: Settings, *, reuse_port: bool = False) -> list[tuple[str, int]]:
    """grpc core's per-listener bounds: message size, streams per connection, connections,
    handshake time, idle connections, and HTTP/2 keepalive that reaps peers gone silent (a
    half-open connection is closed within keepalive + keepalive timeout)."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        # Calls grpc core holds until the serving thread takes them (microseconds each, unless
        # the process is starved): bounded like the calls that wait for their message.
        ("grpc.server.max_pending_requests", settings.max_pending_calls),
        ("grpc.server.max_pending_requests_hard_limit", 2 * settings.max_pending_calls),
        ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_SECONDS * 1000),
        ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_SECONDS * 1000),
        ("grpc.keepalive_time_ms", settings.keepalive_seconds * 1000),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_seconds * 1000),
        # grpc core times a keepalive ping out after the smaller of the two (default 60 s).
        ("grpc.http2.ping_timeout_ms", settings.keepalive_timeout_seconds * 1000),
        # Keepalive pings keep going out on a connection whose calls are silent (a peer that
        # vanished mid-request sends no data frames, and must still be found out).
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def create_grpc_server(
    settings: Settings, *, reuse_port: bool = False, threads: int | None = None
) -> grpc.Server:
    """The gRPC server every listener of the service runs on (the benchmark's null server uses
    it too). Its thread pool is an :class:`~verifier.server.admission.AdmissionExecutor`: a
    call takes one of ``settings.server_threads`` only once its request message is in, at most
    ``settings.max_concurrent_calls`` complete calls at once and ``settings.max_pending_calls``
    waiting ones (beyond either: RESOURCE_EXHAUSTED at once, never an unbounded queue), each
    waiting at most ``settings.receive_timeout_ms``. :func:`server_options` sets the rest.
    ``reuse_port`` lets several processes share the port (``--workers``); otherwise a port in
    use is an error."""
    return grpc_server_with_admission(settings, reuse_port=reuse_port, threads=threads)[0]


def grpc_server_with_admission(
    settings: Settings, *, reuse_port: bool = False, threads: int | None = None
) -> tuple[grpc.Server, AdmissionExecutor]:
    """:func:`create_grpc_server` and its thread pool (whose progress liveness watches)."""
    pool = AdmissionExecutor(
        workers=threads or settings.server_threads,
        max_calls=settings.max_concurrent_calls,
        max_pending=settings.max_pending_calls,
        receive_timeout=settings.receive_timeout_ms / 1000,
    )
    return grpc.server(pool, options=server_options(settings, reuse_port=reuse_port)), pool


async def serve(
    settings: Settings,
    engine: DecisionEngine,
    replay_store: HealthProbe,
    *,
    ready_event: asyncio.Event | None = None,
    on_listening: Callable[[ListeningAddresses], None] | None = None,
    stop_event: asyncio.Event | None = None,
    handle_signals: bool = True,
    health_probe_interval: float = HEALTH_PROBE_INTERVAL_SECONDS,
    health_probe_timeout: float = PROBE_TIMEOUT_SECONDS,
    telemetry: Telemetry | None = None,
    issuer_health: Callable[[], Mapping[str, bool]] | None = None,
    reuse_port: bool = False,
) -> int:
    """Serve until SIGTERM / SIGINT (or ``stop_event``), then shut down gracefully; return how
    many calls were still running on worker threads after the grace period (their callers got
    CANCELLED; the process should exit without waiting for them: :func:`exit_process`).

    Once listening, calls ``on_listening`` with the bound addresses and sets ``ready_event``.
    :data:`LIVENESS_HEALTH_SERVICE` is SERVING from then on while the serving path is not
    wedged (:mod:`verifier.server.health`). The other health services start NOT_SERVING and
    follow the replay store (requests it answered, else its ``ping()``, with hysteresis; with
    ``settings.replay_fail_open`` only :data:`REPLAY_STORE_HEALTH_SERVICE` does: the server
    stays SERVING), and turn NOT_SERVING for good when shutdown begins; the server then
    refuses new calls and lets in-flight ones finish for up to
    ``settings.shutdown_grace_seconds``. Raises ``RuntimeError`` if an address cannot be bound.
    ``engine`` is called on the server's worker threads. ``reuse_port`` shares the ports with
    other processes (``--workers``).
    """
    health_servicer = health.HealthServicer()
    for service in (*_HEALTH_SERVICES, REPLAY_STORE_HEALTH_SERVICE, LIVENESS_HEALTH_SERVICE):
        health_servicer.set(service, _NOT_SERVING)

    evidence = None if settings.replay_fail_open else StoreEvidence()
    decisions = engine if evidence is None else _Observed(engine, evidence)
    server, admission = grpc_server_with_admission(settings, reuse_port=reuse_port)
    routes = route_table(settings)
    verifier_pb2_grpc.add_VerifierServiceServicer_to_server(  # type: ignore[no-untyped-call]
        VerifyService(
            decisions,
            allow_explain=settings.allow_explain,
            routes=routes,
            telemetry=telemetry,
        ),
        server,
    )
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(  # type: ignore[no-untyped-call]
        ExtAuthzService(decisions, extauthz_options(settings, routes), telemetry=telemetry),
        server,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, EXTAUTHZ_SERVICE_NAME, _HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    main_address = _bind(server, settings.listen, _server_credentials(settings))

    health_server = None
    health_address = ""
    if settings.health_listen:
        health_server = create_grpc_server(settings, reuse_port=reuse_port, threads=2)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_address = _bind(health_server, settings.health_listen, None)

    http_listener = None
    if settings.http_listen:
        http_listener = ForwardAuthListener(
            ForwardAuthApp(decisions, forward_auth_options(settings, routes), telemetry=telemetry),
            settings,
        )

    def publish_liveness(alive: bool) -> None:
        health_servicer.set(LIVENESS_HEALTH_SERVICE, _SERVING if alive else _NOT_SERVING)

    watchdog = Watchdog(
        stall_seconds=settings.liveness_stall_seconds,
        progress_ages=lambda: [admission.progress_age()],
        publish=publish_liveness,
    )
    stop = stop_event if stop_event is not None else asyncio.Event()
    server.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        if health_server is not None:
            health_server.start()
        if http_listener is not None:
            http_listener.start()
            _log.info("serving forward-auth HTTP on %s", http_listener.address)
        tasks.append(asyncio.create_task(watchdog.beat_forever()))
        watchdog.start()
        _log.info("serving %s on %s (%s)", SERVICE_NAME, main_address, _transport(settings))
        if health_address:
            _log.info("serving grpc.health.v1 on %s (plaintext)", health_address)

        fail_open = settings.replay_fail_open
        readiness = _Readiness(
            health_servicer,
            replay_store,
            evidence,
            (health_probe_interval, health_probe_timeout),
            fail_open,
        )
        await readiness.update()
        with _signals_set(stop, enabled=handle_signals):
            tasks.append(asyncio.create_task(readiness.run()))
            if issuer_health is not None:
                tasks.append(
                    asyncio.create_task(
                        _monitor_issuers(health_servicer, issuer_health, health_probe_interval)
                    )
                )
            if on_listening is not None:
                on_listening(
                    ListeningAddresses(
                        main_address,
                        health_address,
                        http_listener.address if http_listener is not None else "",
                    )
                )
            if ready_event is not None:
                ready_event.set()
            await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        watchdog.stop()
        grace = settings.shutdown_grace_seconds
        _log.info("shutting down: draining in-flight calls for up to %ss", grace)
        health_servicer.enter_graceful_shutdown()
        stopped = server.stop(grace)
        unanswered = 0
        if http_listener is not None:
            unanswered = await asyncio.to_thread(http_listener.stop, grace)
        await asyncio.to_thread(stopped.wait)
        if health_server is not None:
            await asyncio.to_thread(health_server.stop(None).wait)
        stuck = await asyncio.to_thread(admission.drain, STUCK_CALL_WAIT_SECONDS) + unanswered
        if stuck:
            _log.warning(
                "stopped with %d call(s) still running on worker threads after the grace "
                "period (their callers were cancelled)",
                stuck,
            )
        else:
            _log.info("stopped")
    return stuck


def exit_process(code: int, stuck_calls: int) -> None:
    """End the process with ``code``. With calls still stuck on worker threads (a port that
    ignores its deadline) the interpreter would wait for them at exit (worker threads are
    joined), so the process ends at once instead; flush logs and telemetry before."""
    if stuck_calls:
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def _bind(server: Any, address: str, credentials: Any) -> str:
    """Bind ``address`` and return it with the port the OS actually chose."""
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot listen on {address}: {exc}") from exc
    if not port:
        raise RuntimeError(f"cannot listen on {address}")
    if address.startswith("unix:"):
        return address
    host = address.rpartition(":")[0]
    return f"{host}:{port}"


def _server_credentials(settings: Settings) -> Any:
    """TLS credentials for the main port, or None for plaintext."""
    if not settings.tls_enabled:
        return None
    key = Path(settings.tls_key_file).read_bytes()
    chain = Path(settings.tls_cert_file).read_bytes()
    client_ca = None
    if settings.tls_client_ca_file:
        client_ca = Path(settings.tls_client_ca_file).read_bytes()
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _transport(settings: Settings) -> str:
    if settings.tls_client_ca_file:
        return "mutual TLS"
    return "TLS" if settings.tls_enabled else "plaintext"


ISSUER_HEALTH_SERVICE_PREFIX = "dpop.verifier.v1.Issuer/"
"""Health "services" ``dpop.verifier.v1.Issuer/<issuer>``: SERVING while the issuer's tokens can
be checked (keys fresh or within their staleness bound, last introspection call answered). They
never change the server's overall status: other issuers may be fine."""


async def _monitor_issuers(
    health_servicer: Any, issuer_health: Callable[[], Mapping[str, bool]], interval: float
) -> None:
    published: dict[str, bool] = {}
    while True:
        for issuer, up in issuer_health().items():
            if published.get(issuer) is not up:
                health_servicer.set(
                    ISSUER_HEALTH_SERVICE_PREFIX + issuer, _SERVING if up else _NOT_SERVING
                )
                if issuer in published or not up:
                    level = logging.INFO if up else logging.WARNING
                    _log.log(
                        level, "issuer %s: health %s", issuer, "SERVING" if up else "NOT_SERVING"
                    )
                published[issuer] = up
        await asyncio.sleep(interval)


class _Observed:
    """The engine, with each decision shown to readiness's store evidence."""

    def __init__(self, engine: DecisionEngine, evidence: StoreEvidence) -> None:
        self._engine = engine
        self._evidence = evidence

    def verify(self, facts: RequestFacts, *, explain: bool = False) -> Decision:
        decision = self._engine.verify(facts, explain=explain)
        self._evidence.observe(decision)
        return decision


class _Readiness:
    """Publishes the replay store's state (see :mod:`verifier.server.health`). With
    ``fail_open`` the server keeps answering (unchecked) while the store is down, so only
    :data:`REPLAY_STORE_HEALTH_SERVICE` turns NOT_SERVING."""

    def __init__(
        self,
        health_servicer: Any,
        store: HealthProbe,
        evidence: StoreEvidence | None,
        timing: tuple[float, float],
        fail_open: bool,
    ) -> None:
        self._servicer = health_servicer
        self._store = store
        self._evidence = evidence
        self._interval, self._deadline = timing
        self._fail_open = fail_open
        self._state = Hysteresis()
        self._published: bool | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.update()

    async def update(self) -> None:
        ok = await store_answers(self._store, self._evidence, self._interval, self._deadline)
        up = self._state.observe(ok)
        if up is self._published:
            return
        self._published = up
        self._servicer.set(REPLAY_STORE_HEALTH_SERVICE, _SERVING if up else _NOT_SERVING)
        for service in _HEALTH_SERVICES:
            self._servicer.set(service, _SERVING if up or self._fail_open else _NOT_SERVING)
        if up:
            _log.info("replay store reachable: health SERVING")
        elif self._fail_open:
            _log.error(
                "replay store unreachable: DPOP_REPLAY_FAIL_OPEN is set, so health stays "
                "SERVING and proofs are accepted WITHOUT replay protection"
            )
        else:
            _log.warning("replay store unreachable: health NOT_SERVING")


@contextlib.contextmanager
def _signals_set(stop: asyncio.Event, *, enabled: bool) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set ``stop`` instead of killing the process."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if enabled:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, _request_stop, stop, sig)
            except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
                _log.warning("cannot handle %s here; stop the server another way", sig.name)
                continue
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    _log.info("received %s", sig.name)
    stop.set()
