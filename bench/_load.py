"""The load generator of ``bench/run.py``: pre-serialized requests, raw-bytes gRPC calls.

Every request carries a fresh proof (its own ``jti``), minted and serialized to bytes before
the clock starts. Calls go through a ``grpc.aio`` channel with no serializer (the payload is
sent as is and the answer kept as bytes), so the generator spends no time in protobuf while
measuring; the answers are parsed afterwards and every one must be an allow.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import grpc

from verifier._generated.dpop.verifier.v1 import verifier_pb2 as verify_pb
from verifier._generated.envoy.config.core.v3 import address_pb2, base_pb2
from verifier._generated.envoy.service.auth.v3 import attribute_context_pb2 as attributes_pb
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as extauthz_pb
from verifier.cli.mint import KeyPair, make_proof

CHECK = "/envoy.service.auth.v3.Authorization/Check"
VERIFY = "/dpop.verifier.v1.VerifierService/Verify"
METHODS = {"Check": CHECK, "Verify": VERIFY}

HOST = "api.test"
PATH = "/orders"
URL = f"https://{HOST}{PATH}"


class Denied(RuntimeError):
    """A request the benchmark expected to be allowed was not (the message names the reason)."""


def check_request(token: str, proof: str) -> bytes:
    """A ``CheckRequest`` as Envoy sends it for ``GET https://api.test/orders``."""
    headers = {
        ":authority": HOST,
        ":method": "GET",
        ":path": PATH,
        ":scheme": "https",
        "accept": "application/json",
        "authorization": f"DPoP {token}",
        "dpop": proof,
        "user-agent": "bench/1.0",
        "x-forwarded-proto": "https",
        "x-request-id": str(uuid.uuid4()),
    }
    http = attributes_pb.AttributeContext.HttpRequest(
        id="1", method="GET", scheme="https", host=HOST, path=PATH, protocol="HTTP/1.1"
    )
    http.headers.update(headers)
    peer = attributes_pb.AttributeContext.Peer(
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="10.0.0.7", port_value=40312)
        )
    )
    request = extauthz_pb.CheckRequest(
        attributes=attributes_pb.AttributeContext(
            source=peer,
            request=attributes_pb.AttributeContext.Request(http=http),
            metadata_context=base_pb2.Metadata(),
        )
    )
    return bytes(request.SerializeToString())


def verify_request(token: str, proof: str) -> bytes:
    """A ``VerifyRequest`` for ``GET https://api.test/orders``."""
    request = verify_pb.VerifyRequest(
        method="GET", target_uri=URL, authorization=[f"DPoP {token}"], dpop=[proof]
    )
    return bytes(request.SerializeToString())


def fresh_requests(method: str, client: KeyPair, token: str, n: int) -> list[bytes]:
    """``n`` serialized requests for ``method`` (a path of :data:`METHODS`), each with its own
    freshly minted proof bound to ``token``."""
    build = check_request if method == CHECK else verify_request
    return [build(token, make_proof(client, "GET", URL, access_token=token)) for _ in range(n)]


def outcomes(method: str, answers: list[bytes]) -> Counter[str]:
    """How many answers were allows (``"allow"``) and denials, by reason code."""
    counts: Counter[str] = Counter()
    for raw in answers:
        if method == CHECK:
            check = extauthz_pb.CheckResponse.FromString(raw)
            ok = check.status.code == 0 and check.HasField("ok_response")
            counts["allow" if ok else check.status.message or str(check.status.code)] += 1
        else:
            verify = verify_pb.VerifyResponse.FromString(raw)
            ok = verify.decision == verify_pb.DECISION_ALLOW
            counts["allow" if ok else verify.reason_code] += 1
    return counts


def count_allowed(method: str, answers: list[bytes]) -> int:
    """How many answers are allows; raises :class:`Denied` naming the denials' reasons."""
    counts = outcomes(method, answers)
    denials = {reason: n for reason, n in counts.items() if reason != "allow"}
    if denials:
        name = "Check" if method == CHECK else "Verify"
        raise Denied(f"{name} denied: {', '.join(f'{r} x{n}' for r, n in denials.items())}")
    return counts["allow"]


@dataclass(frozen=True)
class Run:
    """One measured batch of calls."""

    elapsed: float
    latencies: list[float]
    """Seconds per call, sorted (open loop: from the call's scheduled start)."""
    generator_cpu: float
    """CPU seconds the generator process used during the batch."""
    answers: list[bytes]

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.elapsed

    @property
    def generator_load(self) -> float:
        """The generator's CPU use as a fraction of one core."""
        return self.generator_cpu / self.elapsed

    def percentile_ms(self, fraction: float) -> float:
        index = min(len(self.latencies) - 1, int(len(self.latencies) * fraction))
        return self.latencies[index] * 1000


def channel(address: str, index: int = 0) -> grpc.aio.Channel:
    # A channel of its own subchannel pool is a connection of its own (gRPC otherwise shares
    # one connection between channels with the same target and options).
    options = [("grpc.use_local_subchannel_pool", 1)] if index else []
    return grpc.aio.insecure_channel(address, options=options)


async def closed_loop(
    address: str, method: str, requests: list[bytes], concurrency: int, connections: int = 1
) -> Run:
    """Send ``requests`` with ``concurrency`` callers, each waiting for its answer before the
    next call (the throughput curve), spread over ``connections`` HTTP/2 connections."""
    latencies = [0.0] * len(requests)
    answers = [b""] * len(requests)
    next_index = 0
    channels = [channel(address, i) for i in range(max(1, connections))]
    try:
        calls = [ch.unary_unary(method) for ch in channels]
        for ch in channels:
            await ch.channel_ready()

        async def caller(call: grpc.aio.UnaryUnaryMultiCallable) -> None:
            nonlocal next_index
            while next_index < len(requests):
                i = next_index
                next_index += 1
                started = time.perf_counter()
                answers[i] = await call(requests[i])
                latencies[i] = time.perf_counter() - started

        cpu0, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller(calls[c % len(calls)]) for c in range(concurrency)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        for ch in channels:
            await ch.close()
    return Run(elapsed, sorted(latencies), cpu, answers)


async def open_loop(address: str, method: str, requests: list[bytes], rate: float) -> Run:
    """Start one call every ``1/rate`` seconds whatever the answers do (paced load); each
    latency counts from the call's scheduled start, so a stall is not hidden."""
    latencies = [0.0] * len(requests)
    answers = [b""] * len(requests)
    interval = 1.0 / rate
    async with channel(address) as ch:
        call = ch.unary_unary(method)
        await ch.channel_ready()

        async def one(i: int, due: float) -> None:
            answers[i] = await call(requests[i])
            latencies[i] = time.perf_counter() - due

        tasks = []
        cpu0, started = time.process_time(), time.perf_counter()
        for i in range(len(requests)):
            due = started + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return Run(elapsed, sorted(latencies), cpu, answers)


class StalledCalls:
    """``calls`` calls to ``method`` over ``connections`` HTTP/2 connections that send their
    headers and never their request message: what a hostile caller, or a gateway that died
    mid-request, leaves behind. Use as ``async with``: the calls are open inside the block
    until the server ends them (:meth:`outcomes` waits for that); leaving it closes them."""

    def __init__(self, address: str, calls: int, connections: int, method: str = CHECK) -> None:
        self._address, self._n, self._connections, self._method = (
            address,
            calls,
            connections,
            method,
        )
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list[grpc.aio.StreamUnaryCall] = []

    async def _nothing(self):  # type: ignore[no-untyped-def]
        await self._release.wait()
        return
        yield b""  # an async generator that sends no message

    async def __aenter__(self) -> StalledCalls:
        # Built here, on the running event loop (grpc.aio objects belong to one loop); every
        # call's headers are on the wire once this returns.
        self._release = asyncio.Event()
        self._channels = [
            grpc.aio.insecure_channel(
                self._address,
                options=[("grpc.use_local_subchannel_pool", 1), ("grpc.channel_id", i)],
            )
            for i in range(self._connections)
        ]
        self._calls = [
            self._channels[i % self._connections].stream_unary(self._method)(self._nothing())
            for i in range(self._n)
        ]
        await asyncio.gather(*(call.wait_for_connection() for call in self._calls))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def pending(self) -> int:
        """How many calls the server has not ended yet."""
        return sum(1 for call in self._calls if not call.done())

    async def outcomes(self) -> Counter[str]:
        """Wait until the server ends every call; count their status codes."""
        counts: Counter[str] = Counter()
        for call in self._calls:
            try:
                await call
                counts["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                counts[exc.code().name] += 1
        return counts

    async def close(self) -> None:
        self._release.set()
        for ch in self._channels:
            await ch.close()


# -- the forward-auth HTTP listener ----------------------------------------------------------

FORWARD_AUTH_ANNOUNCEMENT = "dpop-verifier forward-auth listening on "


def forward_auth_request(token: str, proof: str) -> bytes:
    """What Traefik's ``ForwardAuth`` sends for ``GET https://api.test/orders`` (keep-alive)."""
    lines = (
        "GET /verify HTTP/1.1",
        "Host: verifier:8081",
        "User-Agent: bench/1.0",
        "X-Forwarded-Method: GET",
        "X-Forwarded-Proto: https",
        f"X-Forwarded-Host: {HOST}",
        f"X-Forwarded-Uri: {PATH}",
        "X-Forwarded-For: 10.0.0.7",
        f"X-Request-Id: {uuid.uuid4()}",
        f"Authorization: DPoP {token}",
        f"DPoP: {proof}",
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def fresh_forward_auth_requests(client: KeyPair, token: str, n: int) -> list[bytes]:
    return [
        forward_auth_request(token, make_proof(client, "GET", URL, access_token=token))
        for _ in range(n)
    ]


def count_http_allowed(answers: list[bytes]) -> int:
    """How many answers are ``200``; raises :class:`Denied` naming the other statuses."""
    counts = Counter(answers)
    others = {status.decode(): n for status, n in counts.items() if status != b"200"}
    if others:
        raise Denied(f"forward-auth denied: {', '.join(f'{s} x{n}' for s, n in others.items())}")
    return counts[b"200"]


async def http_closed_loop(address: str, requests: list[bytes], concurrency: int) -> Run:
    """:func:`closed_loop` for the forward-auth listener: ``concurrency`` callers, each on its
    own keep-alive HTTP/1.1 connection (as a gateway's connection pool holds them). Answers
    are the status codes."""
    host, port = address.rsplit(":", 1)
    latencies = [0.0] * len(requests)
    answers = [b""] * len(requests)
    next_index = 0
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]

    async def caller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal next_index
        while next_index < len(requests):
            i = next_index
            next_index += 1
            started = time.perf_counter()
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            answers[i] = head[9:12]
            latencies[i] = time.perf_counter() - started

    try:
        cpu0, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller(r, w) for r, w in connections))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        for _, writer in connections:
            writer.close()
    return Run(elapsed, sorted(latencies), cpu, answers)
