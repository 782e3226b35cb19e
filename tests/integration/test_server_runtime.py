"""Transport tests of the gRPC runtime: health, reflection, TLS and mTLS, message limits,
fail-closed mapping, graceful drain.

The engine here is a fake that answers without verifying anything: these tests are about the
server around the engine, not about DPoP. The real-engine end-to-end tests live elsewhere.
Run as a script, this module is the child process of the SIGTERM drain tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from verifier._generated.dpop.verifier.v1 import verifier_pb2 as pb
from verifier._generated.dpop.verifier.v1 import verifier_pb2_grpc
from verifier.config import Settings, load_settings
from verifier.domain.model import (
    CheckOutcome,
    ClientCertificateFacts,
    Decision,
    RequestFacts,
    TokenClaims,
)
from verifier.domain.reasons import Reason, RfcError
from verifier.server.runtime import (
    LIVENESS_HEALTH_SERVICE,
    REPLAY_STORE_HEALTH_SERVICE,
    ListeningAddresses,
    exit_process,
    serve,
)

SERVICE = "dpop.verifier.v1.VerifierService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

ALLOW = Decision(
    allow=True,
    reason=Reason.OK,
    message="DPoP proof and access token are valid",
    rfc_error=RfcError.NONE,
    http_status=200,
    jkt="thumbprint",
    jti="jti-1",
    alg="ES256",
    claims=TokenClaims(
        issuer="https://as.example",
        subject="alice",
        client_id="app",
        scope="read",
        expires_at=1_900_000_000,
    ),
    checks=(CheckOutcome("proof.signature", True), CheckOutcome("token.exp", True, "ok")),
)


class FakeEngine:
    """Answers every request with ``decision`` after ``delay`` seconds; verifies nothing."""

    def __init__(
        self,
        decision: Decision = ALLOW,
        *,
        delay: float = 0.0,
        error: Exception | None = None,
        announce: bool = False,
    ) -> None:
        self.decision = decision
        self.delay = delay
        self.error = error
        self.announce = announce
        self.seen: list[RequestFacts] = []
        self.explained: list[bool] = []
        self._lock = threading.Lock()

    def verify(self, facts: RequestFacts, *, explain: bool = False) -> Decision:
        self.seen.append(facts)
        self.explained.append(explain)
        if self.announce:
            print("verify started", flush=True)
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.decision


class HoldingEngine(FakeEngine):
    """Holds every call for ``delay`` seconds; ``full`` is set when the second call is in."""

    def __init__(self, delay: float = 2.0) -> None:
        super().__init__(delay=delay)
        self.full = threading.Event()

    def verify(self, facts: RequestFacts, *, explain: bool = False) -> Decision:
        with self._lock:
            self.seen.append(facts)
            if len(self.seen) >= 2:
                self.full.set()
        time.sleep(self.delay)
        return self.decision

    async def until_full(self) -> None:
        assert await asyncio.to_thread(self.full.wait, 5), "the engine never held two calls"


class FakeStore:
    """A replay store whose reachability the test switches."""

    def __init__(self, up: bool = True) -> None:
        self.up = up

    def ping(self) -> bool:
        return self.up


def verifier_stub(channel: grpc.aio.Channel) -> Any:
    return verifier_pb2_grpc.VerifierServiceStub(channel)  # type: ignore[no-untyped-call]


def plain_settings(**overrides: Any) -> Settings:
    return Settings.from_options(listen="127.0.0.1:0", shutdown_grace_seconds=1.0, **overrides)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, engine: FakeEngine | None = None, store: FakeStore | None = None
) -> AsyncIterator[ListeningAddresses]:
    """Run ``serve`` in this event loop until the block exits."""
    stop, ready = asyncio.Event(), asyncio.Event()
    bound: list[ListeningAddresses] = []
    task = asyncio.create_task(
        serve(
            settings,
            engine or FakeEngine(),
            store or FakeStore(),
            ready_event=ready,
            on_listening=bound.append,
            stop_event=stop,
            handle_signals=False,
            health_probe_interval=0.05,
            health_probe_timeout=0.05,
        )
    )
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait({task, ready_wait}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    ready_wait.cancel()
    if task.done():
        task.result()  # re-raise the start-up error
    assert ready.is_set(), "server did not become ready"
    try:
        yield bound[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def health_status(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(response.status)


async def eventually_status(address: str, expected: int, service: str = "") -> None:
    for _ in range(100):
        if await health_status(address, service) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health of {service!r} never became {expected}")


# --- the servicer through a real server ------------------------------------------------------


async def test_verify_maps_request_and_decision_over_the_wire() -> None:
    async with running(plain_settings()) as bound, grpc.aio.insecure_channel(bound.main) as ch:
        response = await verifier_stub(ch).Verify(
            pb.VerifyRequest(method="GET", explain=True), timeout=5
        )
    assert response.decision == pb.DECISION_ALLOW
    assert response.reason == pb.REASON_OK
    assert response.reason_code == "ok"
    assert response.http_status == 200
    assert response.enforced
    assert (response.jkt, response.jti, response.alg) == ("thumbprint", "jti-1", "ES256")
    assert response.claims == pb.TokenClaims(
        iss="https://as.example", sub="alice", client_id="app", scope="read", exp=1_900_000_000
    )
    assert not response.checks, "explain must be ignored unless the server allows it"


async def test_request_facts_reach_the_engine() -> None:
    engine = FakeEngine()
    async with (
        running(plain_settings(), engine) as bound,
        grpc.aio.insecure_channel(bound.main) as ch,
    ):
        stub = verifier_stub(ch)
        await stub.Verify(
            pb.VerifyRequest(
                method="POST",
                scheme="https",
                authority="api.example:8443",
                path="/items?x=1",
                authorization=["DPoP a", "DPoP b"],
                dpop=["proof"],
                client_address="10.0.0.1",
                route="items",
            ),
            timeout=5,
        )
        await stub.Verify(
            pb.VerifyRequest(
                method="GET",
                target_uri="https://wins.example/",
                scheme="http",
                authority="loses.example",
                proof_only=True,
            ),
            timeout=5,
        )
        await stub.Verify(pb.VerifyRequest(), timeout=5)
    first, second, empty = engine.seen
    assert first == RequestFacts(
        method="POST",
        target_uri="https://api.example:8443/items?x=1",
        authorization=("DPoP a", "DPoP b"),
        dpop=("proof",),
        client_address="10.0.0.1",
        route="items",
        # Verify reports that the request carried no client certificate (RFC 8705 routes).
        client_certificate=ClientCertificateFacts(
            problem=Reason.CLIENT_CERTIFICATE_MISSING, detail="no client_certificate"
        ),
    )
    assert second.target_uri == "https://wins.example/"
    assert second.proof_only
    assert empty.method == "" and empty.target_uri == ""


async def test_explain_returns_checks_only_when_the_server_allows_it() -> None:
    async with (
        running(plain_settings(allow_explain=True)) as bound,
        grpc.aio.insecure_channel(bound.main) as ch,
    ):
        stub = verifier_stub(ch)
        explained = await stub.Verify(pb.VerifyRequest(method="GET", explain=True), timeout=5)
        plain = await stub.Verify(pb.VerifyRequest(method="GET"), timeout=5)
    assert [(c.name, c.passed, c.note) for c in explained.checks] == [
        ("proof.signature", True, ""),
        ("token.exp", True, "ok"),
    ]
    assert not plain.checks


async def test_a_deny_is_a_successful_rpc() -> None:
    deny = Decision(
        allow=False,
        reason=Reason.PROOF_HTU_MISMATCH,
        message="DPoP proof htu does not match",
        rfc_error=RfcError.INVALID_DPOP_PROOF,
        http_status=401,
        www_authenticate='DPoP error="invalid_dpop_proof"',
        dpop_nonce="n-1",
    )
    async with (
        running(plain_settings(), FakeEngine(deny)) as bound,
        grpc.aio.insecure_channel(bound.main) as ch,
    ):
        response = await verifier_stub(ch).Verify(pb.VerifyRequest(method="GET"), timeout=5)
    assert response.decision == pb.DECISION_DENY
    assert response.reason == pb.REASON_PROOF_HTU_MISMATCH
    assert response.reason_code == "proof_htu_mismatch"
    assert response.rfc_error == "invalid_dpop_proof"
    assert response.http_status == 401
    assert response.www_authenticate == 'DPoP error="invalid_dpop_proof"'
    assert response.dpop_nonce == "n-1"
    assert not response.HasField("claims")


async def test_engine_failure_is_an_internal_error_deny_and_logs_no_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = FakeEngine(error=ValueError("eyJhbGciOiJFUzI1NiJ9.secret-token"))
    with caplog.at_level(logging.ERROR):
        async with (
            running(plain_settings(), engine) as bound,
            grpc.aio.insecure_channel(bound.main) as ch,
        ):
            response = await verifier_stub(ch).Verify(
                pb.VerifyRequest(method="GET", authorization=["DPoP eyJ.secret-token"]), timeout=5
            )
    assert response.decision == pb.DECISION_DENY
    assert response.reason == pb.REASON_INTERNAL_ERROR
    assert response.reason_code == "internal_error"
    assert response.http_status == 500
    assert "ValueError" in caplog.text
    assert "secret-token" not in caplog.text


# --- health, reflection, limits --------------------------------------------------------------


async def test_health_follows_the_replay_store() -> None:
    store = FakeStore(up=False)
    async with running(plain_settings(), store=store) as bound:
        for service in ("", SERVICE):
            assert await health_status(bound.main, service) == NOT_SERVING
        store.up = True
        for service in ("", SERVICE):
            await eventually_status(bound.main, SERVING, service)
        store.up = False
        await eventually_status(bound.main, NOT_SERVING, SERVICE)
        store.up = True
        await eventually_status(bound.main, SERVING, SERVICE)


async def test_liveness_is_serving_whatever_the_replay_store_does() -> None:
    # Liveness probes ask dpop.verifier.v1.Liveness: a Redis outage must not restart pods.
    store = FakeStore(up=False)
    async with running(plain_settings(), store=store) as bound:
        assert await health_status(bound.main) == NOT_SERVING
        assert await health_status(bound.main, LIVENESS_HEALTH_SERVICE) == SERVING
        store.up = True
        await eventually_status(bound.main, SERVING)
        store.up = False
        await eventually_status(bound.main, NOT_SERVING, REPLAY_STORE_HEALTH_SERVICE)
        assert await health_status(bound.main, LIVENESS_HEALTH_SERVICE) == SERVING


async def test_a_hanging_or_failing_ping_counts_as_down() -> None:
    class BrokenStore(FakeStore):
        def ping(self) -> bool:
            raise ConnectionError("down")

    async with running(plain_settings(), store=BrokenStore()) as bound:
        assert await health_status(bound.main) == NOT_SERVING


class HangingStore(FakeStore):
    """A store whose pings never answer in time (as under a starved process)."""

    def ping(self) -> bool:
        time.sleep(1)
        return True


async def test_requests_the_store_answers_keep_the_service_ready_while_pings_hang() -> None:
    # Readiness takes requests that reached the replay store as evidence: a probe starved of
    # CPU on a busy pod must not pull it out of the Service. Without requests, pings decide.
    async with running(plain_settings(), store=HangingStore()) as bound:
        assert await health_status(bound.main) == NOT_SERVING
        async with grpc.aio.insecure_channel(bound.main) as ch:
            stub = verifier_stub(ch)
            await stub.Verify(pb.VerifyRequest(method="GET"), timeout=5)  # ALLOW with a jti
            await eventually_status(bound.main, SERVING)
            for _ in range(40):  # 2 s of traffic: 40 probe intervals, every ping hanging
                await stub.Verify(pb.VerifyRequest(method="GET"), timeout=5)
                assert await health_status(bound.main) == SERVING
                await asyncio.sleep(0.05)
        await eventually_status(bound.main, NOT_SERVING)  # no traffic: the pings decide


async def test_one_failed_ping_is_not_an_outage() -> None:
    class FlakyStore(FakeStore):
        """Every third ping fails."""

        def __init__(self) -> None:
            super().__init__()
            self.pings = 0

        def ping(self) -> bool:
            self.pings += 1
            return self.pings % 3 != 0

    store = FlakyStore()
    async with running(plain_settings(), store=store) as bound:
        while store.pings < 30:
            assert await health_status(bound.main) == SERVING
            await asyncio.sleep(0.02)


class WedgingEngine(FakeEngine):
    """Never answers until ``release`` is set: a port call that hangs, a stuck worker."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def verify(self, facts: RequestFacts, *, explain: bool = False) -> Decision:
        self.release.wait(30)
        return self.decision


async def test_liveness_fails_while_the_serving_path_is_wedged_and_recovers() -> None:
    settings = plain_settings(
        server_threads=2, liveness_stall_seconds=1, health_listen="127.0.0.1:0"
    )
    engine = WedgingEngine()
    async with running(settings, engine) as bound, grpc.aio.insecure_channel(bound.main) as ch:
        assert await health_status(bound.health, LIVENESS_HEALTH_SERVICE) == SERVING
        stub = verifier_stub(ch)
        stuck = [stub.Verify(pb.VerifyRequest(method="GET"), timeout=30) for _ in range(2)]
        held = asyncio.gather(*stuck)
        await eventually_status(bound.health, NOT_SERVING, LIVENESS_HEALTH_SERVICE)
        engine.release.set()
        assert [a.decision for a in await held] == [pb.DECISION_ALLOW] * 2
        await eventually_status(bound.health, SERVING, LIVENESS_HEALTH_SERVICE)


async def test_liveness_stays_serving_while_calls_keep_finishing() -> None:
    # Busy is not wedged: calls that each take a while, back to back, beyond the stall time.
    settings = plain_settings(
        server_threads=2, liveness_stall_seconds=1, health_listen="127.0.0.1:0"
    )
    async with (
        running(settings, FakeEngine(delay=0.2)) as bound,
        grpc.aio.insecure_channel(bound.main) as ch,
    ):
        stub = verifier_stub(ch)
        for _ in range(10):  # 2 s of calls on both workers
            await asyncio.gather(
                *(stub.Verify(pb.VerifyRequest(method="GET"), timeout=5) for _ in range(2))
            )
            assert await health_status(bound.health, LIVENESS_HEALTH_SERVICE) == SERVING


async def test_reflection_lists_and_describes_the_services() -> None:
    async with running(plain_settings()) as bound, grpc.aio.insecure_channel(bound.main) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
        ]
        listed, described = [r async for r in stub.ServerReflectionInfo(iter(requests))]
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto


async def test_oversize_request_is_rejected_by_the_transport() -> None:
    settings = plain_settings(max_proof_bytes=1000, max_token_bytes=1000, max_message_bytes=4096)
    async with running(settings) as bound, grpc.aio.insecure_channel(bound.main) as ch:
        stub = verifier_stub(ch)
        small = await stub.Verify(pb.VerifyRequest(method="GET", dpop=["x" * 1000]), timeout=5)
        assert small.decision == pb.DECISION_ALLOW
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Verify(pb.VerifyRequest(method="GET", dpop=["x" * 5000]), timeout=5)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_calls_beyond_max_concurrent_calls_fail_fast_with_resource_exhausted() -> None:
    # Two calls may run at once. While two are held in the engine, two more are refused at
    # once (never queued without bound); the two held ones are then answered.
    settings = plain_settings(max_concurrent_calls=2, server_threads=4)
    engine = HoldingEngine()
    async with (
        running(settings, engine) as bound,
        grpc.aio.insecure_channel(bound.main) as ch,
    ):
        stub = verifier_stub(ch)
        held = asyncio.gather(
            *[stub.Verify(pb.VerifyRequest(method="GET"), timeout=10) for _ in range(2)]
        )
        await engine.until_full()
        more = [stub.Verify(pb.VerifyRequest(method="GET"), timeout=5) for _ in range(2)]
        refused = await asyncio.gather(*more, return_exceptions=True)
        answered = await held
    assert [r.code() for r in refused if isinstance(r, grpc.aio.AioRpcError)] == [
        grpc.StatusCode.RESOURCE_EXHAUSTED
    ] * 2
    assert [r.decision for r in answered] == [pb.DECISION_ALLOW] * 2


async def test_liveness_on_the_health_listener_answers_while_the_main_port_sheds_calls() -> None:
    # What the chart's liveness probe relies on: an overloaded pod is not a dead one. The main
    # port's call limit counts health calls too; the health-only listener has its own.
    settings = plain_settings(max_concurrent_calls=2, server_threads=4, health_listen="127.0.0.1:0")
    engine = HoldingEngine()
    async with (
        running(settings, engine) as bound,
        grpc.aio.insecure_channel(bound.main) as ch,
    ):
        stub = verifier_stub(ch)
        busy = [stub.Verify(pb.VerifyRequest(method="GET"), timeout=10) for _ in range(2)]
        held = asyncio.gather(*busy)
        await engine.until_full()  # both in the engine: at the limit
        with pytest.raises(grpc.aio.AioRpcError) as shed:
            await health_status(bound.main, LIVENESS_HEALTH_SERVICE)
        assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await health_status(bound.health, LIVENESS_HEALTH_SERVICE) == SERVING
        answers = await held
    assert all(a.decision == pb.DECISION_ALLOW for a in answers)


async def test_logs_the_bound_address(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="verifier.server.runtime"):
        async with running(plain_settings()) as bound:
            assert bound.main.startswith("127.0.0.1:")
            assert not bound.main.endswith(":0")
    assert f"on {bound.main} (plaintext)" in caplog.text


async def test_an_address_in_use_fails_start_up() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(RuntimeError, match=f"cannot listen on {address}"):
            async with running(Settings.from_options(listen=address)):
                pass


# --- TLS and mutual TLS ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: bytes
    server_cert: Path
    server_key: Path
    ca_file: Path
    client_cert: bytes
    client_key: bytes
    stranger_cert: bytes
    stranger_key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
            )
            .add_extension(x509.ExtendedKeyUsage([usage or ExtendedKeyUsageOID.SERVER_AUTH]), False)
        )
        if usage is None:
            san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("127.0.0.1", server_key, (ca, ca_key))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("client", client_key, (ca, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _certificate("other CA", other_ca_key, None)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _certificate(
        "stranger", stranger_key, (other_ca, other_ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )

    pem = serialization.Encoding.PEM
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(_pem_key(server_key))
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    return Pki(
        ca=ca.public_bytes(pem),
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        ca_file=directory / "ca.pem",
        client_cert=client.public_bytes(pem),
        client_key=_pem_key(client_key),
        stranger_cert=stranger.public_bytes(pem),
        stranger_key=_pem_key(stranger_key),
    )


async def _verify_over(channel: grpc.aio.Channel) -> pb.VerifyResponse:
    stub = verifier_stub(channel)
    response: pb.VerifyResponse = await stub.Verify(pb.VerifyRequest(method="GET"), timeout=5)
    return response


async def test_tls_handshake_and_plaintext_health_port(pki: Pki) -> None:
    settings = plain_settings(
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
        health_listen="127.0.0.1:0",
    )
    async with running(settings) as bound:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca)
        async with grpc.aio.secure_channel(bound.main, credentials) as channel:
            assert (await _verify_over(channel)).decision == pb.DECISION_ALLOW
        async with grpc.aio.insecure_channel(bound.main) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await _verify_over(channel)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await health_status(bound.health, SERVICE) == SERVING
        async with grpc.aio.insecure_channel(bound.health) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await _verify_over(channel)
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki: Pki) -> None:
    settings = plain_settings(
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
        tls_client_ca_file=str(pki.ca_file),
    )
    async with running(settings) as bound:
        trusted = grpc.ssl_channel_credentials(pki.ca, pki.client_key, pki.client_cert)
        async with grpc.aio.secure_channel(bound.main, trusted) as channel:
            assert (await _verify_over(channel)).decision == pb.DECISION_ALLOW

        for credentials in (
            grpc.ssl_channel_credentials(pki.ca),
            grpc.ssl_channel_credentials(pki.ca, pki.stranger_key, pki.stranger_cert),
        ):
            async with grpc.aio.secure_channel(bound.main, credentials) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await _verify_over(channel)
                assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


# --- graceful shutdown on SIGTERM (a real child process) -------------------------------------


@contextlib.asynccontextmanager
async def child_server(
    delay: float, grace: float
) -> AsyncIterator[tuple[asyncio.subprocess.Process, ListeningAddresses]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPOP_")}
    env |= {
        "DPOP_LISTEN": "127.0.0.1:0",
        "DPOP_HEALTH_LISTEN": "127.0.0.1:0",
        "DPOP_SHUTDOWN_GRACE_SECONDS": str(grace),
        "TEST_ENGINE_DELAY": str(delay),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line, "the child server exited before listening"
        yield proc, ListeningAddresses(**json.loads(line))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_drains_in_flight_calls_then_exits() -> None:
    async with child_server(delay=1.5, grace=10) as (proc, bound):
        assert proc.stdout is not None
        async with grpc.aio.insecure_channel(bound.main) as channel:
            in_flight = asyncio.create_task(_verify_over(channel))
            assert await asyncio.wait_for(proc.stdout.readline(), 5) == b"verify started\n"
            await eventually_status(bound.health, SERVING)

            assert await health_status(bound.health, LIVENESS_HEALTH_SERVICE) == SERVING
            proc.send_signal(signal.SIGTERM)
            await eventually_status(bound.health, NOT_SERVING)
            assert await health_status(bound.health, LIVENESS_HEALTH_SERVICE) == NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _verify_over(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

            response = await asyncio.wait_for(in_flight, 10)
            assert response.decision == pb.DECISION_ALLOW
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_sigterm_cuts_calls_that_outlast_the_grace_period() -> None:
    async with child_server(delay=30, grace=0.5) as (proc, bound):
        assert proc.stdout is not None
        async with grpc.aio.insecure_channel(bound.main) as channel:
            in_flight = asyncio.create_task(_verify_over(channel))
            assert await asyncio.wait_for(proc.stdout.readline(), 5) == b"verify started\n"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.aio.AioRpcError):
                await asyncio.wait_for(in_flight, 10)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def _child_main() -> None:
    """Serve with a slow fake engine, print the bound addresses as JSON, stop on SIGTERM."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    engine = FakeEngine(delay=float(os.environ["TEST_ENGINE_DELAY"]), announce=True)

    def announce(bound: ListeningAddresses) -> None:
        print(json.dumps({"main": bound.main, "health": bound.health}), flush=True)

    stuck = asyncio.run(serve(load_settings(), engine, FakeStore(), on_listening=announce))
    exit_process(0, stuck)  # as the service's entry point does


if __name__ == "__main__":
    _child_main()
