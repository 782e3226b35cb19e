"""JWT access-token validation: claims, JWK Sets, the validator, its key sources and their HTTP.

The remote key source and the issuer HTTP client are exercised against real ``http.server``s
on 127.0.0.1; concurrent requests are threads, as the gRPC worker threads are.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.http_server import LoopbackHttpServer, QuietHandler
from tests.support.pki import make_pki, make_untrusted_ca
from tests.support.threads import race_in_threads
from tests.unit.helpers import (
    AUDIENCE,
    DROP,
    ISSUER,
    ISSUER_KID,
    NOW,
    FakeClock,
    flip_signature_bit,
    issuer_key,
    key,
    make_proof,
    make_token,
    proof_key,
    trusted_issuer,
    with_members,
)
from verifier._generated.dpop.verifier.v1 import verifier_pb2
from verifier.cli import mint
from verifier.domain.model import TokenClaims
from verifier.domain.reasons import Denial, Reason
from verifier.tokens.claims import (
    EARLIEST_NUMERIC_DATE,
    LATEST_NUMERIC_DATE,
    check_audience,
    check_token_claims,
    confirmation_jkt,
)
from verifier.tokens.http import (
    MAX_DOCUMENT_BYTES,
    DocumentInvalid,
    Fetched,
    HTTPError,
    IssuerHttp,
)
from verifier.tokens.jwks import MAX_KEYS, InvalidJwks, IssuerKey, parse_jwks
from verifier.tokens.sources import KeySourceUnavailable, RemoteKeySource, StaticKeySource
from verifier.tokens.validator import TokenCache, TokenValidator, TrustedIssuer

LEEWAY = 30.0


def _claims(**members: Any) -> dict[str, Any]:
    return with_members({"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 300, "iat": NOW}, members)


def _claims_reason(payload: dict[str, Any], audience: str | None = AUDIENCE) -> Reason:
    with pytest.raises(Denial) as caught:
        check_token_claims(payload, audience=audience, now=NOW, leeway=LEEWAY)
    return caught.value.reason


# --- pure claim checks --------------------------------------------------------------------


def test_valid_claims_are_returned() -> None:
    payload = _claims(sub="alice", client_id="c1", scope="a b", cnf={"jkt": "abc"})
    claims = check_token_claims(payload, audience=AUDIENCE, now=NOW, leeway=LEEWAY)
    assert claims == TokenClaims(
        issuer=ISSUER, subject="alice", client_id="c1", scope="a b", expires_at=NOW + 300, jkt="abc"
    )


CLAIMS = [
    ("exp missing", _claims(exp=DROP), Reason.TOKEN_EXPIRED),
    ("exp past the leeway", _claims(exp=NOW - LEEWAY), Reason.TOKEN_EXPIRED),
    ("exp long ago", _claims(exp=0), Reason.TOKEN_EXPIRED),
    ("exp a string", _claims(exp=str(NOW + 300)), Reason.TOKEN_CLAIMS_INVALID),
    ("exp true", _claims(exp=True), Reason.TOKEN_CLAIMS_INVALID),
    ("exp beyond the float range", _claims(exp=10**400), Reason.TOKEN_CLAIMS_INVALID),
    ("exp infinite", _claims(exp=float("inf")), Reason.TOKEN_CLAIMS_INVALID),
    ("exp beyond int64", _claims(exp=2**63), Reason.TOKEN_CLAIMS_INVALID),
    ("exp beyond exact floats", _claims(exp=2**53), Reason.TOKEN_CLAIMS_INVALID),
    ("exp after 9999", _claims(exp=LATEST_NUMERIC_DATE + 1), Reason.TOKEN_CLAIMS_INVALID),
    ("exp 1e300", _claims(exp=1e300), Reason.TOKEN_CLAIMS_INVALID),
    ("exp before year 1", _claims(exp=EARLIEST_NUMERIC_DATE - 1), Reason.TOKEN_CLAIMS_INVALID),
    ("nbf after 9999", _claims(nbf=LATEST_NUMERIC_DATE + 1), Reason.TOKEN_CLAIMS_INVALID),
    ("iat before year 1", _claims(iat=-(2**63)), Reason.TOKEN_CLAIMS_INVALID),
    ("nbf in the future", _claims(nbf=NOW + LEEWAY + 1), Reason.TOKEN_NOT_YET_VALID),
    ("iat in the future", _claims(iat=NOW + LEEWAY + 1), Reason.TOKEN_NOT_YET_VALID),
    ("nbf a string", _claims(nbf="now"), Reason.TOKEN_CLAIMS_INVALID),
    ("audience wrong", _claims(aud="https://other.example.com"), Reason.TOKEN_AUDIENCE_INVALID),
    ("audience missing", _claims(aud=DROP), Reason.TOKEN_AUDIENCE_INVALID),
    ("audience not in list", _claims(aud=["a", "b"]), Reason.TOKEN_AUDIENCE_INVALID),
    ("audience an object", _claims(aud={AUDIENCE: True}), Reason.TOKEN_AUDIENCE_INVALID),
    ("audience prefix", _claims(aud=AUDIENCE + "/x"), Reason.TOKEN_AUDIENCE_INVALID),
    ("cnf a string", _claims(cnf="jkt"), Reason.TOKEN_CLAIMS_INVALID),
    ("cnf an array", _claims(cnf=[{"jkt": "abc"}]), Reason.TOKEN_CLAIMS_INVALID),
    ("cnf.jkt a number", _claims(cnf={"jkt": 1}), Reason.TOKEN_CLAIMS_INVALID),
    ("cnf.jkt empty", _claims(cnf={"jkt": ""}), Reason.TOKEN_CLAIMS_INVALID),
    ("cnf.jkt too long", _claims(cnf={"jkt": "j" * 129}), Reason.TOKEN_CLAIMS_INVALID),
    ("sub a number", _claims(sub=42), Reason.TOKEN_CLAIMS_INVALID),
    ("scope a number", _claims(scope=1), Reason.TOKEN_CLAIMS_INVALID),
    ("scope a mixed list", _claims(scope=["a", 1]), Reason.TOKEN_CLAIMS_INVALID),
]


@pytest.mark.parametrize(("why", "payload", "expected"), CLAIMS, ids=[w for w, _, _ in CLAIMS])
def test_token_claims_refused(why: str, payload: dict[str, Any], expected: Reason) -> None:
    assert _claims_reason(payload) is expected


def test_time_edges_use_the_leeway() -> None:
    check_token_claims(_claims(exp=NOW - LEEWAY + 1), audience=None, now=NOW, leeway=LEEWAY)
    check_token_claims(_claims(nbf=NOW + LEEWAY), audience=None, now=NOW, leeway=LEEWAY)
    assert _claims_reason(_claims(nbf=NOW + LEEWAY + 0.5)) is Reason.TOKEN_NOT_YET_VALID


def test_numeric_dates_at_the_bounds_are_accepted_and_fit_the_api() -> None:
    payload = _claims(exp=LATEST_NUMERIC_DATE, nbf=EARLIEST_NUMERIC_DATE, iat=0)
    claims = check_token_claims(payload, audience=AUDIENCE, now=NOW, leeway=LEEWAY)
    assert claims.expires_at == LATEST_NUMERIC_DATE
    # VerifyResponse.claims.exp is an int64: the latest accepted exp must fit it.
    assert verifier_pb2.TokenClaims(exp=claims.expires_at).exp == LATEST_NUMERIC_DATE
    assert LATEST_NUMERIC_DATE < 2**53


def test_audience() -> None:
    check_audience({"aud": AUDIENCE}, AUDIENCE)
    check_audience({"aud": ["x", AUDIENCE]}, AUDIENCE)
    check_audience({}, None)  # no audience configured: not checked
    check_token_claims(_claims(aud=DROP), audience=None, now=NOW, leeway=LEEWAY)


def test_binding_claim() -> None:
    assert confirmation_jkt({}) == ""
    assert confirmation_jkt({"cnf": {}}) == ""
    assert confirmation_jkt({"cnf": {"x5t#S256": "abc"}}) == ""
    assert confirmation_jkt({"cnf": {"jkt": "abc"}}) == "abc"


def test_scope_may_be_a_list_or_scp() -> None:
    assert (
        check_token_claims(_claims(scope=["a", "b"]), audience=None, now=NOW, leeway=0).scope
        == "a b"
    )
    assert check_token_claims(_claims(scp="a b"), audience=None, now=NOW, leeway=0).scope == "a b"


# --- JWK Sets ---------------------------------------------------------------------------------


def test_parse_jwks() -> None:
    document = mint.jwks_for(issuer_key(), kid="k1")
    document["keys"] += [
        {"kty": "oct"},  # unknown type: skipped
        "not a key",  # skipped
        {**key("RS256").public_jwk, "kid": 7},  # non-string kid ignored
    ]
    keys = parse_jwks(document)
    assert [(k.kid, k.alg) for k in keys] == [("k1", "ES256"), (None, None)]
    assert keys[0].usable_for("ES256")
    assert not keys[0].usable_for("ES384")  # declared alg differs
    assert not keys[0].usable_for("RS256")
    assert keys[1].usable_for("PS256") and not keys[1].usable_for("ES256")
    enc = IssuerKey(jwk={**issuer_key().public_jwk, "use": "enc"}, kid=None, alg=None)
    assert not enc.usable_for("ES256")


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"keys": {}},
        {"key": []},
        {"keys": [issuer_key().private_jwk()]},
        {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}] * (MAX_KEYS + 1)},
    ],
)
def test_unusable_jwks_is_refused(document: Any) -> None:
    with pytest.raises(InvalidJwks):
        parse_jwks(document)


def test_static_source_from_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(mint.jwks_for(issuer_key(), kid="k1")))
    source = StaticKeySource.from_file(path)
    assert source.keys("k1")[0].kid == "k1"
    assert source.keys("k2") == ()
    path.write_text("{not json")
    with pytest.raises(InvalidJwks, match=r"jwks\.json"):
        StaticKeySource.from_file(path)


# --- the validator ----------------------------------------------------------------------------


class CountingSource:
    """Test double: serves fixed keys and counts lookups."""

    def __init__(self, keys: tuple[IssuerKey, ...]) -> None:
        self._keys, self.calls = keys, 0

    def keys(self, kid: str | None) -> tuple[IssuerKey, ...]:
        self.calls += 1
        return tuple(k for k in self._keys if kid is None or k.kid == kid)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _validator(**issuer: Any) -> TokenValidator:
    return TokenValidator([trusted_issuer(**issuer)], leeway=LEEWAY)


def _reason(token: str, validator: TokenValidator | None = None) -> Reason:
    with pytest.raises(Denial) as caught:
        (validator or _validator()).validate(token, NOW)
    return caught.value.reason


def test_valid_token() -> None:
    claims = _validator().validate(make_token(), NOW)
    assert (claims.issuer, claims.subject, claims.client_id) == (ISSUER, "alice", "client-1")
    assert claims.jkt == proof_key().jkt
    assert claims.expires_at == NOW + 300


@pytest.mark.parametrize("alg", ["ES384", "RS256", "PS512", "EdDSA", "Ed25519"])
def test_each_issuer_alg(alg: str) -> None:
    signer = key(alg, 1)
    source = StaticKeySource(parse_jwks(mint.jwks_for(signer, kid=ISSUER_KID)))
    claims = _validator(source=source).validate(make_token(signer=signer), NOW)
    assert claims.issuer == ISSUER


def test_verified_tokens_are_cached_until_exp() -> None:
    source = CountingSource(parse_jwks(mint.jwks_for(issuer_key(), kid=ISSUER_KID)))
    cache = TokenCache(max_entries=2)
    validator = TokenValidator([trusted_issuer(source=source)], leeway=0, cache=cache)
    token = make_token()
    validator.validate(token, NOW)
    validator.validate(token, NOW + 299)
    assert source.calls == 1 and len(cache) == 1
    with pytest.raises(Denial) as caught:
        validator.validate(token, NOW + 300)
    assert caught.value.reason is Reason.TOKEN_EXPIRED
    for _ in range(3):
        validator.validate(make_token(), NOW)
    assert len(cache) == 2


TOKENS = [
    ("not a JWT", lambda: "opaque-token", Reason.TOKEN_MALFORMED),
    ("two parts", lambda: make_token().rsplit(".", 1)[0], Reason.TOKEN_MALFORMED),
    ("payload not JSON", lambda: "e30.bm90anNvbg.c2ln", Reason.TOKEN_MALFORMED),
    ("a DPoP proof", lambda: make_proof(claims={"iss": ISSUER}), Reason.TOKEN_MALFORMED),
    ("crit", lambda: make_token(header={"crit": ["x"]}), Reason.TOKEN_MALFORMED),
    ("iss missing", lambda: make_token(claims={"iss": DROP}), Reason.TOKEN_ISSUER_UNKNOWN),
    (
        "iss unknown",
        lambda: make_token(claims={"iss": "https://evil.example"}),
        Reason.TOKEN_ISSUER_UNKNOWN,
    ),
    ("iss not a string", lambda: make_token(claims={"iss": [ISSUER]}), Reason.TOKEN_ISSUER_UNKNOWN),
    (
        "iss trailing slash",
        lambda: make_token(claims={"iss": ISSUER + "/"}),
        Reason.TOKEN_ISSUER_UNKNOWN,
    ),
    ("alg none", lambda: make_token(header={"alg": "none"}), Reason.TOKEN_ALG_NOT_ALLOWED),
    ("alg HS256", lambda: make_token(header={"alg": "HS256"}), Reason.TOKEN_ALG_NOT_ALLOWED),
    ("alg missing", lambda: make_token(header={"alg": DROP}), Reason.TOKEN_ALG_NOT_ALLOWED),
    ("kid unknown", lambda: make_token(header={"kid": "other"}), Reason.TOKEN_KEY_UNKNOWN),
    (
        "alg of another key type",
        lambda: make_token(signer=key("RS256", 1)),
        Reason.TOKEN_KEY_UNKNOWN,
    ),
    (
        "signed by another key",
        lambda: make_token(signer=key("ES256", 2)),
        Reason.TOKEN_SIGNATURE_INVALID,
    ),
    (
        "signature bit flipped",
        lambda: flip_signature_bit(make_token(), 100),
        Reason.TOKEN_SIGNATURE_INVALID,
    ),
    ("expired", lambda: make_token(now=NOW - 400), Reason.TOKEN_EXPIRED),
    ("nbf in the future", lambda: make_token(claims={"nbf": NOW + 60}), Reason.TOKEN_NOT_YET_VALID),
    (
        "audience wrong",
        lambda: make_token(claims={"aud": "https://other.example"}),
        Reason.TOKEN_AUDIENCE_INVALID,
    ),
    ("cnf not an object", lambda: make_token(claims={"cnf": "x"}), Reason.TOKEN_CLAIMS_INVALID),
]


@pytest.mark.parametrize(("why", "build", "expected"), TOKENS, ids=[w for w, _, _ in TOKENS])
def test_token_refused(why: str, build: Any, expected: Reason) -> None:
    assert _reason(build()) is expected


def test_alg_outside_the_issuers_algs_is_refused() -> None:
    validator = _validator(algs=frozenset({"RS256"}))
    assert _reason(make_token(), validator) is Reason.TOKEN_ALG_NOT_ALLOWED


def test_token_without_kid_tries_the_issuers_keys() -> None:
    claims = _validator().validate(make_token(header={"kid": DROP}), NOW)
    assert claims.issuer == ISSUER


def test_unavailable_key_source() -> None:
    def down(url: str) -> Any:
        raise OSError("connection refused")

    source = RemoteKeySource("https://as.example.com/jwks", fetcher=down)
    assert _reason(make_token(), _validator(source=source)) is Reason.KEY_SOURCE_UNAVAILABLE
    with pytest.raises(KeySourceUnavailable):
        source.keys(None)
    assert source.last_error == "OSError"


def test_remote_source_needs_an_http_url() -> None:
    with pytest.raises(ValueError, match="jwks_uri"):
        RemoteKeySource("file:///etc/jwks.json")


# --- the remote source against a real HTTP server --------------------------------------------


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts requests and answers after ``delay`` seconds;
    ``jwks`` may be replaced at any time."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.requests = 0
        self.delay = 0.0
        self._lock = threading.Lock()
        served = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with served._lock:
                    served.requests += 1
                    body = json.dumps(served.jwks).encode()
                time.sleep(served.delay)
                self.send_body(body, "application/json")

        self._server = LoopbackHttpServer(Handler)
        self.url = f"{self._server.base_url}/jwks"

    def stop(self) -> None:
        self._server.close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer(mint.jwks_for(issuer_key(), kid=ISSUER_KID))
    yield server
    server.stop()


COOLDOWN = 30.0


def _remote(server: JwksServer, clock: FakeClock) -> tuple[RemoteKeySource, TokenValidator]:
    source = RemoteKeySource(server.url, unknown_kid_cooldown=COOLDOWN, timeout=2.0, clock=clock)
    return source, TokenValidator([TrustedIssuer(ISSUER, source, audience=AUDIENCE)])


def test_remote_keys_load_on_first_use(jwks_server: JwksServer) -> None:
    _, validator = _remote(jwks_server, FakeClock())
    assert validator.validate(make_token(), NOW).issuer == ISSUER
    assert jwks_server.requests == 1


async def test_start_fetches_once_and_close_stops_the_refresh(jwks_server: JwksServer) -> None:
    source, _ = _remote(jwks_server, FakeClock())
    await source.start()
    await source.close()
    assert jwks_server.requests == 1
    assert [k.kid for k in source.keys(ISSUER_KID)] == [ISSUER_KID]


def test_unknown_kid_refetches_once_per_cooldown_even_when_concurrent(
    jwks_server: JwksServer,
) -> None:
    clock = FakeClock()
    _, validator = _remote(jwks_server, clock)
    validator.validate(make_token(), NOW)
    assert jwks_server.requests == 1

    def hundred_unknown() -> list[TokenClaims | BaseException]:
        tokens = [make_token(header={"kid": "unknown"}) for _ in range(100)]
        return race_in_threads([partial(validator.validate, t, NOW) for t in tokens])

    # Right after the initial load: the load does not start the cool-down (issue 19), so the
    # first unknown kid refetches at once, once for all 100 concurrent requests.
    results = hundred_unknown()
    assert {r.reason for r in results if isinstance(r, Denial)} == {Reason.TOKEN_KEY_UNKNOWN}
    assert len(results) == 100 and jwks_server.requests == 2

    clock.now += COOLDOWN / 2  # inside the cool-down of that refetch: no fetch at all
    results = hundred_unknown()
    assert all(isinstance(r, Denial) and r.reason is Reason.TOKEN_KEY_UNKNOWN for r in results)
    assert jwks_server.requests == 2
    clock.now += COOLDOWN / 2
    hundred_unknown()
    assert jwks_server.requests == 3
    # Known kids never trigger a fetch.
    validator.validate(make_token(), NOW)
    assert jwks_server.requests == 3


def test_key_rotation_is_picked_up_through_the_unknown_kid_path(
    jwks_server: JwksServer,
) -> None:
    clock = FakeClock()
    _, validator = _remote(jwks_server, clock)
    validator.validate(make_token(), NOW)

    new_key = key("ES256", 3)
    jwks_server.jwks = mint.jwks_for(new_key, kid="as-key-2")
    rotated = [make_token(signer=new_key, header={"kid": "as-key-2"}) for _ in range(100)]
    clock.now += COOLDOWN
    jwks_server.delay = 0.2  # all 100 ask while the one fetch is out, and wait for it
    results = race_in_threads([partial(validator.validate, t, NOW) for t in rotated])
    assert {claims.issuer for claims in results if isinstance(claims, TokenClaims)} == {ISSUER}
    assert len(results) == 100
    assert jwks_server.requests == 2
    # The retired key is gone from the served set and so from the cache.
    with pytest.raises(Denial) as caught:
        validator.validate(make_token(), NOW)
    assert caught.value.reason is Reason.TOKEN_KEY_UNKNOWN


def test_server_down_keeps_cached_keys_working(jwks_server: JwksServer) -> None:
    clock = FakeClock()
    source, validator = _remote(jwks_server, clock)
    validator.validate(make_token(), NOW)
    jwks_server.stop()

    clock.now += COOLDOWN
    source.refresh()  # a background refresh fails ...
    assert source.last_error
    assert validator.validate(make_token(), NOW).issuer == ISSUER  # ... keys stay

    with pytest.raises(Denial) as caught:  # an unknown kid, inside the cool-down: no fetch
        validator.validate(make_token(header={"kid": "unknown"}), NOW)
    assert caught.value.reason is Reason.TOKEN_KEY_UNKNOWN
    assert validator.validate(make_token(), NOW).issuer == ISSUER


def test_server_down_before_the_first_load_is_unavailable(jwks_server: JwksServer) -> None:
    jwks_server.stop()
    _, validator = _remote(jwks_server, FakeClock())
    assert _reason(make_token(), validator) is Reason.KEY_SOURCE_UNAVAILABLE


def test_bad_document_keeps_the_last_good_keys(jwks_server: JwksServer) -> None:
    clock = FakeClock()
    source, validator = _remote(jwks_server, clock)
    validator.validate(make_token(), NOW)
    jwks_server.jwks = {"keys": "not a list"}
    source.refresh()
    assert source.last_error == "InvalidJwks"
    assert validator.validate(make_token(), NOW).issuer == ISSUER


# --- the issuer HTTP client against a real server --------------------------------------------


class IssuerStandIn(QuietHandler):
    """GET ``/ok`` (a JSON object, cacheable for a minute), ``/array``, ``/large`` (one byte
    over the limit), ``/redirect`` (302 to ``/ok``) and ``/trickle`` (a byte every 50 ms)."""

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b" ")
                    time.sleep(0.05)
            except OSError:
                return  # the client gave up
        else:
            bodies = {
                "/ok": b'{"keys": []}',
                "/array": b"[]",
                "/large": b'{"x": "%s"}' % (b"a" * (MAX_DOCUMENT_BYTES - 8)),
            }
            body = bodies[self.path]
            self.send_response(200)
            self.send_header("Cache-Control", "max-age=60")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


def test_issuer_http_takes_one_json_object_and_nothing_else() -> None:
    http = IssuerHttp(timeout=2.0)
    with LoopbackHttpServer(IssuerStandIn) as server:
        assert http.get_json(f"{server.base_url}/ok") == Fetched({"keys": []}, 60.0)
        with pytest.raises(HTTPError) as redirected:  # redirects are never followed
            http.get_json(f"{server.base_url}/redirect")
        assert redirected.value.status == 302
        with pytest.raises(DocumentInvalid, match="not a JSON object"):
            http.get_json(f"{server.base_url}/array")
        with pytest.raises(DocumentInvalid, match="larger than"):
            http.get_json(f"{server.base_url}/large")
    http.close()


def test_issuer_http_gives_up_on_a_trickling_answer_at_its_deadline() -> None:
    http = IssuerHttp(timeout=0.5)
    with LoopbackHttpServer(IssuerStandIn) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            http.get_json(f"{server.base_url}/trickle")
        assert time.monotonic() - started < 1.5  # each byte came within the read timeout
    http.close()


def test_issuer_http_is_shared_by_threads() -> None:
    http = IssuerHttp(timeout=2.0, max_connections=4)
    with LoopbackHttpServer(IssuerStandIn) as server:
        url = f"{server.base_url}/ok"
        results = race_in_threads([lambda: http.get_json(url) for _ in range(32)])
    http.close()
    assert results == [Fetched({"keys": []}, 60.0)] * 32


def test_issuer_http_verifies_tls_with_the_configured_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server_cert_file, pki.server_key_file)
    with LoopbackHttpServer(IssuerStandIn, tls=tls) as server:
        url = f"{server.base_url}/ok"
        trusting = IssuerHttp(timeout=2.0, ca_file=str(pki.ca_file))
        assert trusting.get_json(url).document == {"keys": []}
        trusting.close()
        for ca_file in ("", str(make_untrusted_ca(tmp_path))):
            distrusting = IssuerHttp(timeout=2.0, ca_file=ca_file)
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                distrusting.get_json(url)
            distrusting.close()


# --- issue 19: RFC 9068 token profile, several audiences, the client's claim ----------------


@pytest.mark.parametrize(
    ("typ", "accepted"),
    [
        ("at+jwt", True),
        ("application/at+jwt", True),  # RFC 7515 §4.1.9: the prefix may be written
        ("AT+JWT", True),  # media types are case-insensitive
        ("Application/At+Jwt", True),
        ("JWT", False),  # RFC 9068 §4: any other typ is refused by default
        ("jwt", False),
        ("dpop+jwt", False),
        ("application/dpop+jwt", False),
        ("at+jwt+x", False),
        ("text/at+jwt", False),
        ("", False),
        (DROP, False),  # no typ at all
        (1, False),
        (["at+jwt"], False),
    ],
)
def test_token_typ_is_rfc9068_by_default(typ: Any, accepted: bool) -> None:
    token = make_token(header={"typ": typ})
    if accepted:
        assert _validator().validate(token, NOW).issuer == ISSUER
    else:
        assert _reason(token) is Reason.TOKEN_MALFORMED


def test_token_typ_allowance_is_per_issuer() -> None:
    keycloak_like = _validator(jwt_types=frozenset({"jwt", "at+jwt"}))
    assert keycloak_like.validate(make_token(header={"typ": "JWT"}), NOW).issuer == ISSUER
    assert keycloak_like.validate(make_token(), NOW).issuer == ISSUER
    assert _reason(make_token(header={"typ": DROP}), keycloak_like) is Reason.TOKEN_MALFORMED
    assert _reason(make_token(header={"typ": "dpop+jwt"}), keycloak_like) is (
        Reason.TOKEN_MALFORMED
    )
    untyped = _validator(jwt_types=frozenset({""}))  # "" accepts a token without typ
    assert untyped.validate(make_token(header={"typ": DROP}), NOW).issuer == ISSUER
    assert _reason(make_token(), untyped) is Reason.TOKEN_MALFORMED


def test_a_wrong_typ_is_refused_before_any_key_lookup() -> None:
    source = CountingSource(parse_jwks(mint.jwks_for(issuer_key(), kid=ISSUER_KID)))
    validator = _validator(source=source)
    assert _reason(make_token(header={"typ": "JWT", "kid": "new"}), validator) is (
        Reason.TOKEN_MALFORMED
    )
    assert source.calls == 0


def test_iat_is_required_in_jwt_access_tokens() -> None:
    """RFC 9068 §2.2: iat is REQUIRED; an issuer whose tokens lack it can be let through."""
    assert _reason(make_token(claims={"iat": DROP})) is Reason.TOKEN_CLAIMS_INVALID
    assert _reason(make_token(claims={"iat": None})) is Reason.TOKEN_CLAIMS_INVALID
    lenient = _validator(require_iat=False)
    assert lenient.validate(make_token(claims={"iat": DROP}), NOW).issuer == ISSUER
    with pytest.raises(Denial) as caught:
        check_token_claims(
            _claims(iat=DROP), audience=AUDIENCE, now=NOW, leeway=LEEWAY, require_iat=True
        )
    assert caught.value.reason is Reason.TOKEN_CLAIMS_INVALID
    # Introspection answers may omit iat (RFC 7662 §2.2): not required there.
    check_token_claims(_claims(iat=DROP), audience=AUDIENCE, now=NOW, leeway=LEEWAY)


def test_several_audiences_any_match_counts() -> None:
    orders, billing = "https://orders.example.com", "https://billing.example.com"
    validator = _validator(audience=(orders, billing))
    for aud in (orders, billing, [orders], ["other", billing], [billing, orders]):
        assert validator.validate(make_token(claims={"aud": aud}), NOW).issuer == ISSUER
    for aud in ("other", ["other"], [], DROP, None, [1, 2], {orders: True}, orders + "/"):
        assert _reason(make_token(claims={"aud": aud}), validator) is (
            Reason.TOKEN_AUDIENCE_INVALID
        )
    check_audience({"aud": billing}, [orders, billing])
    with pytest.raises(Denial):
        check_audience({"aud": orders}, ())  # an empty list accepts nothing: fail closed


@pytest.mark.parametrize(
    ("claims", "client_id_claims", "expected"),
    [
        ({"client_id": "c1", "azp": "c2"}, ("client_id", "azp"), "c1"),
        ({"client_id": DROP, "azp": "c2"}, ("client_id", "azp"), "c2"),  # Keycloak, Auth0
        ({"client_id": "", "azp": "c2"}, ("client_id", "azp"), "c2"),
        ({"client_id": DROP, "cid": "okta"}, ("cid", "client_id"), "okta"),  # Okta
        ({"client_id": DROP, "appid": "v1"}, ("azp", "appid"), "v1"),  # Entra v1.0
        ({"client_id": DROP}, ("client_id", "azp"), ""),  # names no client: no header
    ],
)
def test_the_client_is_the_first_client_claim_present(
    claims: dict[str, Any], client_id_claims: tuple[str, ...], expected: str
) -> None:
    validator = _validator(client_id_claims=client_id_claims)
    assert validator.validate(make_token(claims=claims), NOW).client_id == expected


def test_a_client_claim_of_the_wrong_type_is_refused() -> None:
    assert _reason(make_token(claims={"client_id": DROP, "azp": 7})) is (
        Reason.TOKEN_CLAIMS_INVALID
    )
