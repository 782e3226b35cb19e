"""Token sources against a real authorization-server stand-in on loopback (issue 8).

Every test builds the service from settings (``build_app``, the real wiring) and decides real
requests through ``Verifier.verify`` with proofs and tokens from :mod:`verifier.cli.mint`:
discovery, key rotation, unknown ``kid`` refetches, the issuer going down, opaque tokens by
introspection, client authentication and multi-issuer routing. Concurrent requests are
threads, as the gRPC worker threads are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.auth_server import CLIENT_ID, CLIENT_SECRET, AuthServer, auth_server
from tests.support.telemetry import observed_telemetry
from tests.support.threads import race_in_threads
from verifier.app import App, build_app
from verifier.cli import mint
from verifier.config import IssuerSettings, Settings, load_settings
from verifier.domain.model import Decision, Mode, Policy, RequestFacts
from verifier.domain.reasons import Reason
from verifier.server.runtime import ISSUER_HEALTH_SERVICE_PREFIX, ListeningAddresses, serve
from verifier.tokens.sources import RemoteKeySource

URL = "https://api.example.com/orders"
AUDIENCE = "https://api.example.com"
CLIENT = mint.generate_key("ES256")
OTHER_CLIENT = mint.generate_key("ES256")


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with auth_server() as running:
        yield running


@contextmanager
def running_app(*issuers: IssuerSettings) -> Iterator[App]:
    """The service built and started (keys and metadata loaded), closed at the end."""
    app = build_app(Settings.from_options(issuers=issuers))
    asyncio.run(app.start())
    try:
        yield app
    finally:
        asyncio.run(app.close())


def discovered(server: AuthServer, **options: Any) -> IssuerSettings:
    return IssuerSettings(issuer=server.issuer, audience=AUDIENCE, discovery=True, **options)


def introspecting(server: AuthServer, **options: Any) -> IssuerSettings:
    fields: dict[str, Any] = {
        "issuer": server.issuer,
        "audience": AUDIENCE,
        "introspection_endpoint": server.introspection_endpoint,
        "introspection_client_id": CLIENT_ID,
        "introspection_secret": CLIENT_SECRET,
        "opaque_tokens": True,
    }
    fields.update(options)
    return IssuerSettings(**fields)


def facts(
    token: str, *, key: mint.KeyPair = CLIENT, scheme: str = "DPoP", mode: Mode = Mode.REQUIRE
) -> RequestFacts:
    proof = mint.make_proof(key, "GET", URL, access_token=token)
    return RequestFacts(
        method="GET",
        target_uri=URL,
        authorization=(f"{scheme} {token}",),
        dpop=(proof,) if scheme == "DPoP" else (),
        policy=Policy(mode=mode),
    )


def decide(app: App, token: str, **options: Any) -> Decision:
    return app.engine.verify(facts(token, **options))


def decide_at_once(app: App, tokens: list[str]) -> list[Decision]:
    """Decide each token on a thread of its own, all released together."""
    results = race_in_threads([partial(decide, app, t) for t in tokens])
    decisions = [r for r in results if isinstance(r, Decision)]
    assert len(decisions) == len(tokens), results
    return decisions


def remote(app: App, index: int = 0) -> RemoteKeySource:
    source = app.issuers[index].remote
    assert source is not None
    return source


def active(jkt: str | None = CLIENT.jkt, **answer: Any) -> dict[str, Any]:
    """An introspection answer for an active DPoP-bound token."""
    document: dict[str, Any] = {
        "active": True,
        "token_type": "DPoP",
        "sub": "alice",
        "client_id": "client-1",
        "scope": "orders:read",
        "aud": AUDIENCE,
        "exp": int(time.time()) + 300,
    }
    if jkt is not None:
        document["cnf"] = {"jkt": jkt}
    document.update(answer)
    return document


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_by_rfc8414_metadata(server: AuthServer) -> None:
    with running_app(discovered(server)) as app:
        decision = decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))
    assert decision.reason is Reason.OK
    assert server.count("/.well-known/oauth-authorization-server") == 1
    assert server.count("/.well-known/openid-configuration") == 0
    assert server.count("/jwks") == 1


def test_discovery_falls_back_to_openid_configuration_for_an_issuer_with_a_path() -> None:
    with auth_server("/realms/demo") as keycloak_like:
        keycloak_like.serve_rfc8414 = False
        with running_app(discovered(keycloak_like)) as app:
            token = keycloak_like.token(jkt=CLIENT.jkt, audience=AUDIENCE)
            assert (decide(app, token)).reason is Reason.OK
        assert keycloak_like.count("/.well-known/oauth-authorization-server/realms/demo") == 1
        assert keycloak_like.count("/realms/demo/.well-known/openid-configuration") == 1


def test_metadata_naming_another_issuer_is_refused(
    server: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.metadata_issuer = "https://impostor.example"
    with (
        caplog.at_level(logging.ERROR, logger="verifier.tokens.discovery"),
        running_app(discovered(server)) as app,
    ):
        decision = decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))
        (status,) = app.issuer_status()
    assert decision.reason is Reason.KEY_SOURCE_UNAVAILABLE
    assert server.count("/jwks") == 0  # the refused document's jwks_uri was never followed
    assert status["metadata_error"] == "IssuerMismatch" and status["usable"] is False
    assert any("names another issuer" in r.getMessage() for r in caplog.records)


def test_dpop_signing_algs_of_the_issuer_narrow_the_proof_algs(server: AuthServer) -> None:
    server.dpop_algs = ["ES256"]
    es384_client = mint.generate_key("ES384")
    with running_app(discovered(server)) as app:
        allowed = decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))
        token = server.token(jkt=es384_client.jkt, audience=AUDIENCE)
        refused = decide(app, token, key=es384_client)
    assert allowed.reason is Reason.OK
    assert refused.reason is Reason.PROOF_ALG_NOT_ALLOWED


# --- key rotation ------------------------------------------------------------------------------


def test_rotation_is_picked_up_by_the_background_refresh_with_no_failed_request(
    server: AuthServer,
) -> None:
    server.cache_control = "max-age=1"  # refreshed after 0.8 s (min bound lowered to 1 s)
    old_key, new_key = server.signing_key, mint.generate_key("ES256")
    signing: dict[str, Any] = {"key": old_key, "kid": "key-1"}
    decisions: list[Decision] = []
    with running_app(discovered(server, jwks_min_refresh_seconds=1)) as app:
        source = remote(app)

        def traffic() -> None:
            while not stop.wait(0.02):
                token = server.token(
                    jkt=CLIENT.jkt, audience=AUDIENCE, key=signing["key"], kid=signing["kid"]
                )
                decisions.append(decide(app, token))

        def wait_for_a_fetch() -> None:
            deadline, count = time.monotonic() + 5, source.counters.fetches
            while source.counters.fetches <= count:
                assert time.monotonic() < deadline, "no background refresh within 5 s"
                time.sleep(0.02)

        stop = threading.Event()
        running = threading.Thread(target=traffic)
        running.start()
        # 1. The issuer publishes the next key next to the current one ...
        server.jwks = {"keys": [*server.jwks["keys"], *mint.jwks_for(new_key, "key-2")["keys"]]}
        wait_for_a_fetch()
        # 2. ... starts signing with it once the refresh has run, 3. retires the old key.
        signing.update(key=new_key, kid="key-2")
        server.jwks = mint.jwks_for(new_key, "key-2")
        wait_for_a_fetch()
        stop.set()
        running.join()
    assert len(decisions) > 10
    assert {d.reason for d in decisions} == {Reason.OK}
    assert source.counters.unknown_kid_refetches == 0  # the background refresh did it all
    assert source.counters.fetch_failures == 0


def test_unknown_kid_refetches_once_per_cooldown_under_100_concurrent_requests(
    server: AuthServer,
) -> None:
    rotated = mint.generate_key("ES256")
    with running_app(discovered(server, unknown_kid_cooldown_seconds=1)) as app:
        assert server.count("/jwks") == 1

        def hundred(key: mint.KeyPair, kid: str) -> set[Reason]:
            tokens = [
                server.token(jkt=CLIENT.jkt, audience=AUDIENCE, key=key, kid=kid)
                for _ in range(100)
            ]
            return {d.reason for d in decide_at_once(app, tokens)}

        # The start-up fetch does not start the cool-down (issue 19): refetched at once.
        assert hundred(mint.generate_key("ES256"), "nobody") == {Reason.TOKEN_KEY_UNKNOWN}
        assert server.count("/jwks") == 2
        assert hundred(mint.generate_key("ES256"), "nobody") == {Reason.TOKEN_KEY_UNKNOWN}
        assert server.count("/jwks") == 2  # inside the cool-down: no fetch at all

        # An unannounced rotation: the first token with the new kid fetches once, all pass.
        server.jwks = mint.jwks_for(rotated, "key-2")
        time.sleep(1.05)
        assert hundred(rotated, "key-2") == {Reason.OK}
        assert server.count("/jwks") == 3
        assert remote(app).counters.unknown_kid_refetches == 2


def test_issuer_down_keeps_verification_working_on_cached_keys(server: AuthServer) -> None:
    with running_app(discovered(server)) as app:
        source = remote(app)
        assert (decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))).allow
        server.stop()
        source.refresh()  # a refresh fails: the last good keys stay
        for _ in range(3):  # fresh tokens each time: not served by the verified-token cache
            decision = decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))
            assert decision.reason is Reason.OK
        (status,) = app.issuer_status()
    assert status["usable"] is True and status["consecutive_failures"] == 1
    assert status["last_error"] == "ConnectError"
    assert source.counters.fetch_failures == 1


def test_stale_keys_are_bounded_then_the_source_recovers(server: AuthServer) -> None:
    server.cache_control = "max-age=1"
    options = {"jwks_min_refresh_seconds": 1, "jwks_max_stale_seconds": 0}
    with running_app(discovered(server, **options)) as app:
        source = remote(app)
        assert (decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))).allow
        server.stop()
        time.sleep(1.1)  # past the key set's lifetime, with no staleness allowed
        decision = decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))
        assert decision.reason is Reason.KEY_SOURCE_UNAVAILABLE
        assert source.status().state == "expired"
        server.restart()
        source.refresh()
        decision = decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))
        assert decision.reason is Reason.OK
        assert source.status().state == "fresh"


# --- opaque tokens: introspection --------------------------------------------------------------


def test_opaque_dpop_token_with_matching_proof_is_allowed(server: AuthServer) -> None:
    token = server.opaque("opaque-1", **active())
    with running_app(introspecting(server)) as app:
        decision = decide(app, token)
    assert decision.reason is Reason.OK
    assert decision.claims is not None
    assert (decision.claims.issuer, decision.claims.subject) == (server.issuer, "alice")
    assert decision.claims.jkt == CLIENT.jkt


def test_opaque_token_refusals(server: AuthServer) -> None:
    tokens: dict[str, tuple[str, dict[str, Any]]] = {
        "mismatched proof": (server.opaque("t-1", **active()), {"key": OTHER_CLIENT}),
        "sent as Bearer": (server.opaque("t-2", **active()), {"scheme": "Bearer"}),
        "inactive": (server.opaque("t-3", active=False), {}),
        "never issued": ("t-unknown", {}),
        "token_type Bearer, bound": (server.opaque("t-4", **active(token_type="Bearer")), {}),
        "token_type Bearer, unbound": (
            server.opaque("t-5", **active(jkt=None, token_type="Bearer")),
            {},
        ),
        "DPoP type without cnf": (server.opaque("t-6", **active(jkt=None)), {}),
        "expired": (server.opaque("t-7", **active(exp=int(time.time()) - 120)), {}),
        "other audience": (server.opaque("t-8", **active(aud="https://elsewhere")), {}),
        "other issuer": (server.opaque("t-9", **active(iss="https://other.example")), {}),
    }
    expected = {
        "mismatched proof": Reason.JKT_MISMATCH,
        "sent as Bearer": Reason.TOKEN_BOUND_SENT_AS_BEARER,
        "inactive": Reason.TOKEN_INACTIVE,
        "never issued": Reason.TOKEN_INACTIVE,
        "token_type Bearer, bound": Reason.TOKEN_CLAIMS_INVALID,
        "token_type Bearer, unbound": Reason.TOKEN_NOT_BOUND,
        "DPoP type without cnf": Reason.TOKEN_CLAIMS_INVALID,
        "expired": Reason.TOKEN_EXPIRED,
        "other audience": Reason.TOKEN_AUDIENCE_INVALID,
        "other issuer": Reason.TOKEN_ISSUER_UNKNOWN,
    }
    with running_app(introspecting(server)) as app:
        got = {
            why: (decide(app, token, **options)).reason for why, (token, options) in tokens.items()
        }
    assert got == expected


def test_unbound_opaque_bearer_token_passes_where_the_route_allows_bearer(
    server: AuthServer,
) -> None:
    token = server.opaque("bearer-1", **active(jkt=None, token_type="Bearer"))
    with running_app(introspecting(server)) as app:
        decision = decide(app, token, scheme="Bearer", mode=Mode.ALLOW_BEARER)
    assert decision.reason is Reason.OK


def test_100_concurrent_requests_with_one_opaque_token_cause_one_introspection(
    server: AuthServer,
) -> None:
    token = server.opaque("popular", **active())
    server.introspection_delay = 0.2  # all 100 arrive while the first call is out
    with running_app(introspecting(server)) as app:
        decisions = decide_at_once(app, [token] * 100)
        assert {d.reason for d in decisions} == {Reason.OK}
        assert server.count("/introspect") == 1
        assert (decide(app, token)).reason is Reason.OK  # and later ones hit the cache
        assert server.count("/introspect") == 1
        counters = app.issuers[0].trusted.introspector.counters  # type: ignore[union-attr]
    assert (counters.calls, counters.collapsed, counters.cache_hits) == (1, 99, 1)


def test_refusals_are_cached_briefly_and_answers_no_longer_than_configured(
    server: AuthServer,
) -> None:
    inactive = server.opaque("gone", active=False)
    valid = server.opaque("valid", **active())
    options = {"introspection_negative_cache_seconds": 1, "introspection_cache_seconds": 1}
    with running_app(introspecting(server, **options)) as app:
        for _ in range(3):
            assert (decide(app, inactive)).reason is Reason.TOKEN_INACTIVE
            assert (decide(app, valid)).reason is Reason.OK
        assert server.count("/introspect") == 2
        time.sleep(1.05)
        assert (decide(app, inactive)).reason is Reason.TOKEN_INACTIVE
        server.opaque("valid", active=False)  # revoked at the issuer
        assert (decide(app, valid)).reason is Reason.TOKEN_INACTIVE
        assert server.count("/introspect") == 4


def test_introspection_endpoint_down_fails_closed_and_is_not_cached(
    server: AuthServer,
) -> None:
    token = server.opaque("opaque-1", **active())
    with running_app(introspecting(server)) as app:
        server.stop()
        decision = decide(app, token)
        assert decision.reason is Reason.INTROSPECTION_UNAVAILABLE
        assert (decision.http_status, decision.www_authenticate) == (503, "")
        assert app.issuer_status()[0]["introspection_error"] == "ConnectError"
        server.restart()
        assert (decide(app, token)).reason is Reason.OK


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "private_key_jwt"])
def test_client_authentication_methods(server: AuthServer, method: str, tmp_path: Path) -> None:
    server.client_auth = method
    options: dict[str, Any] = {"introspection_auth": method}
    if method == "private_key_jwt":
        client_key = mint.generate_key("ES256")
        server.client_public_jwk = client_key.public_jwk
        key_file = tmp_path / "introspection.jwk"
        key_file.write_text(json.dumps({**client_key.private_jwk(), "kid": "c1"}))
        options.update(introspection_key_file=str(key_file), introspection_secret="")
    token = server.opaque("opaque-1", **active())
    with running_app(introspecting(server, **options)) as app:
        assert (decide(app, token)).reason is Reason.OK
    if method == "private_key_jwt":
        (assertion,) = server.assertions
        assert assertion["aud"] == server.issuer and assertion["iss"] == CLIENT_ID


def test_wrong_client_secret_is_a_fault_not_a_token_problem(server: AuthServer) -> None:
    token = server.opaque("opaque-1", **active())
    with running_app(introspecting(server, introspection_secret="wrong")) as app:
        assert (decide(app, token)).reason is Reason.INTROSPECTION_UNAVAILABLE


def test_config_file_with_discovery_and_a_secret_from_the_environment(
    server: AuthServer, tmp_path: Path
) -> None:
    """The whole path from a TOML file: discovery finds the introspection endpoint."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[[issuers]]
issuer = "{server.issuer}"
audience = "{AUDIENCE}"
discovery = true
introspection_client_id = "{CLIENT_ID}"
introspection_auth = "client_secret_post"
introspection_secret_env = "AS_INTROSPECTION_SECRET"
opaque_tokens = true
"""
    )
    server.client_auth = "client_secret_post"
    settings = load_settings(
        {"config_file": str(config)}, environ={"AS_INTROSPECTION_SECRET": CLIENT_SECRET}
    )
    assert CLIENT_SECRET not in repr(settings)
    token = server.opaque("opaque-1", **active())
    app = build_app(settings)
    asyncio.run(app.start())
    try:
        opaque = decide(app, token)
        jwt = decide(app, server.token(jkt=CLIENT.jkt, audience=AUDIENCE))
    finally:
        asyncio.run(app.close())
    assert (opaque.reason, jwt.reason) == (Reason.OK, Reason.OK)
    assert server.count("/introspect") == 1  # the JWT was verified locally


# --- multi-issuer routing ----------------------------------------------------------------------


def test_tokens_are_routed_to_their_issuer_and_unknown_issuers_denied() -> None:
    with auth_server("/a") as first, auth_server("/b") as second, auth_server("/c") as unknown:
        jwt_b = second.token(jkt=CLIENT.jkt, audience=AUDIENCE)
        opaque = first.opaque("opaque-1", **active())
        with running_app(
            introspecting(first, discovery=True), discovered(second, introspect_jwts=False)
        ) as app:
            reasons = [
                (decide(app, first.token(jkt=CLIENT.jkt, audience=AUDIENCE))).reason,
                (decide(app, jwt_b)).reason,
                (decide(app, opaque)).reason,
                (decide(app, unknown.token(jkt=CLIENT.jkt, audience=AUDIENCE))).reason,
            ]
        assert reasons == [Reason.OK, Reason.OK, Reason.OK, Reason.TOKEN_ISSUER_UNKNOWN]
        assert (first.count("/jwks"), second.count("/jwks"), unknown.count("/jwks")) == (1, 1, 0)
        assert (first.count("/introspect"), second.count("/introspect")) == (1, 0)


def test_introspect_jwts_sends_the_issuers_jwts_to_introspection(server: AuthServer) -> None:
    token = server.token(jkt=CLIENT.jkt, audience=AUDIENCE)
    server.opaque(token, **active())
    settings = introspecting(server, discovery=True, introspect_jwts=True, opaque_tokens=False)
    with running_app(settings) as app:
        assert (decide(app, token)).reason is Reason.OK
        assert server.count("/jwks") == 1  # discovered, but not used for this issuer's JWTs
    assert server.count("/introspect") == 1


def test_opaque_token_without_an_opaque_issuer_is_malformed(server: AuthServer) -> None:
    with running_app(discovered(server)) as app:
        assert (decide(app, "opaque-1")).reason is Reason.TOKEN_MALFORMED


# --- health --------------------------------------------------------------------------------------


async def test_issuer_health_is_published_per_issuer(server: AuthServer) -> None:
    """grpc.health.v1 service ``dpop.verifier.v1.Issuer/<issuer>`` follows the issuer's keys."""
    issuer = discovered(server, jwks_min_refresh_seconds=1, jwks_max_stale_seconds=0)
    server.cache_control = "max-age=1"
    settings = Settings.from_options(
        listen="127.0.0.1:0", shutdown_grace_seconds=0, issuers=(issuer,)
    )
    app = build_app(settings)
    await app.start()
    addresses: list[ListeningAddresses] = []
    ready, stop = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(
        serve(
            settings,
            app.engine,
            app.replay,
            on_listening=addresses.append,
            ready_event=ready,
            stop_event=stop,
            handle_signals=False,
            health_probe_interval=0.05,
            issuer_health=app.issuer_health,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    channel = grpc.aio.insecure_channel(addresses[0].main)
    health = health_pb2_grpc.HealthStub(channel)
    service = ISSUER_HEALTH_SERVICE_PREFIX + server.issuer

    async def status_becomes(expected: int) -> None:
        while True:
            request = health_pb2.HealthCheckRequest(service=service)
            if (await health.Check(request)).status == expected:
                return
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(status_becomes(health_pb2.HealthCheckResponse.SERVING), 5)
        server.stop()  # keys expire after 1 s with no staleness allowed
        await asyncio.wait_for(status_becomes(health_pb2.HealthCheckResponse.NOT_SERVING), 5)
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert overall.status == health_pb2.HealthCheckResponse.SERVING  # the server is fine
        server.restart()
        await asyncio.to_thread(remote(app).refresh)
        await asyncio.wait_for(status_becomes(health_pb2.HealthCheckResponse.SERVING), 5)
    finally:
        await channel.close()
        stop.set()
        await serving
        await app.close()


def test_worker_threads_answer_introspected_tokens_from_the_cache(server: AuthServer) -> None:
    """On worker threads, the first request for an opaque token introspects it (a refusal
    too); later ones, on other threads, are answered from the cache without a call."""
    valid = server.opaque("threaded", **active())
    inactive = server.opaque("threaded-gone", active=False)
    with running_app(introspecting(server)) as app:
        first = decide_at_once(app, [valid, inactive])
        assert [d.reason for d in first] == [Reason.OK, Reason.TOKEN_INACTIVE]
        assert server.count("/introspect") == 2
        later = decide_at_once(app, [valid, inactive] * 3)
        assert [d.reason for d in later] == [Reason.OK, Reason.TOKEN_INACTIVE] * 3
        assert server.count("/introspect") == 2


def test_a_cached_refusal_on_a_worker_thread_is_traced_like_the_first_one(
    server: AuthServer,
) -> None:
    """The first refusal is introspected, the second found in the cache: both leave a
    ``dpop.token.validate`` span with the reason."""
    from verifier.doors.verify import VERIFY_METHOD

    inactive = server.opaque("traced-gone", active=False)
    observed = observed_telemetry()
    app = build_app(Settings.from_options(issuers=(introspecting(server),)), observed.telemetry)
    asyncio.run(app.start())

    def on_a_worker_thread() -> Decision:
        with observed.telemetry.decision_scope(VERIFY_METHOD) as scope:
            scope.decision = app.engine.verify(facts(inactive))
        return scope.decision

    try:
        with ThreadPoolExecutor(1) as workers:
            decisions = [workers.submit(on_a_worker_thread).result() for _ in range(2)]
    finally:
        asyncio.run(app.close())
    assert [d.reason for d in decisions] == [Reason.TOKEN_INACTIVE] * 2
    assert server.count("/introspect") == 1
    token_spans = [
        dict(s.attributes or {}) for s in observed.finished() if s.name == "dpop.token.validate"
    ]
    assert [a.get("dpop.reason") for a in token_spans] == ["token_inactive"] * 2


# --- opaque tokens bound to a client certificate (RFC 8705 §3.2) ---------------------------------


def test_introspection_answer_with_a_certificate_binding(
    server: AuthServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The answer's top-level ``cnf.x5t#S256`` binds the opaque token to the client certificate
    that the Verify door reads from ``client_certificate``: the right one is allowed, another
    one or none is refused, on an ``mtls`` route."""
    from tests.support.mtls_pki import make_mtls_pki
    from verifier._generated.dpop.verifier.v1 import verifier_pb2
    from verifier.domain.routes import parse_routes
    from verifier.doors.verify import verify_request_facts
    from verifier.mtls.binding import x5t_s256

    pki = make_mtls_pki(tmp_path_factory.mktemp("pki"))
    routes = parse_routes([{"path_prefix": "/", "sender_constraint": "mtls"}], default=Policy())
    answer = active(jkt=None, token_type="Bearer", cnf={"x5t#S256": x5t_s256(pki.client.der)})
    token = server.opaque("x5t-1", **answer)

    def decide_with(certificate: bytes) -> Decision:
        request = verifier_pb2.VerifyRequest(
            method="GET",
            target_uri=URL,
            authorization=[f"Bearer {token}"],
            client_certificate=certificate,
        )
        return app.engine.verify(verify_request_facts(request, routes))

    with running_app(introspecting(server)) as app:
        allowed = decide_with(pki.client.der)
        assert allowed.reason is Reason.OK, allowed.message
        assert allowed.claims is not None and allowed.claims.x5t_s256
        assert decide_with(pki.other_client.der).reason is Reason.CLIENT_CERTIFICATE_MISMATCH
        assert decide_with(b"").reason is Reason.CLIENT_CERTIFICATE_MISSING
    assert server.count("/introspect") == 1  # the answer is cached for the three decisions
