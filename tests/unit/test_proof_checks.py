"""The RFC 9449 §4.3 checks as pure functions: each bad input and the exact reason code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.helpers import (
    DROP,
    NOW,
    RESOURCE_URL,
    key,
    make_proof,
    proof_key,
    sign_raw,
    with_members,
)
from verifier.domain.reasons import Denial, Reason
from verifier.dpop import proof as proofs
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS, b64url_encode, parse_compact

ALLOWED = frozenset(DEFAULT_PROOF_ALGS)
LIMITS = proofs.ProofLimits()


def _reason(call: Any, *args: Any, **kwargs: Any) -> Reason:
    with pytest.raises(Denial) as caught:
        call(*args, **kwargs)
    return caught.value.reason


def _b64(value: str | bytes) -> str:
    return b64url_encode(value.encode() if isinstance(value, str) else value)


# --- §4.3 (1): one DPoP header --------------------------------------------------------------

GOOD = make_proof()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), Reason.PROOF_MISSING),
        (("",), Reason.PROOF_MISSING),
        (("  ", "\t"), Reason.PROOF_MISSING),
        ((GOOD, GOOD), Reason.PROOF_MULTIPLE),
        (("", GOOD), Reason.PROOF_MULTIPLE),  # an empty field is a field
        ((GOOD, " "), Reason.PROOF_MULTIPLE),
        ((GOOD, make_proof()), Reason.PROOF_MULTIPLE),
        ((f"{GOOD},{GOOD}",), Reason.PROOF_MULTIPLE),
        ((f"{GOOD}, {make_proof()}",), Reason.PROOF_MULTIPLE),
        ((GOOD + ",",), Reason.PROOF_MULTIPLE),
        (("a" * (LIMITS.max_proof_bytes + 1),), Reason.PROOF_TOO_LARGE),
    ],
)
def test_select_single_proof_refuses(values: tuple[str, ...], expected: Reason) -> None:
    assert _reason(proofs.select_single_proof, values, LIMITS.max_proof_bytes) is expected


def test_select_single_proof_accepts_one_value_around_optional_white_space() -> None:
    assert proofs.select_single_proof((GOOD,), LIMITS.max_proof_bytes) == GOOD
    assert proofs.select_single_proof((f" \t{GOOD} ",), LIMITS.max_proof_bytes) == GOOD


def test_proof_size_limit_is_inclusive() -> None:
    value = "a" * LIMITS.max_proof_bytes
    assert proofs.select_single_proof((value,), LIMITS.max_proof_bytes) == value


# --- §4.3 (2): a well-formed JWS ------------------------------------------------------------

HEADER = _b64(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": proof_key().public_jwk}))
PAYLOAD = _b64('{"jti":"a","htm":"GET","htu":"https://x/","iat":1}')
SIG = _b64(b"\x01" * 64)


def _jws(header: str = HEADER, payload: str = PAYLOAD, signature: str = SIG) -> str:
    return f"{header}.{payload}.{signature}"


MALFORMED = [
    ("empty", ""),
    ("one part", HEADER),
    ("two parts", f"{HEADER}.{PAYLOAD}"),
    ("four parts", f"{HEADER}.{PAYLOAD}.{SIG}.{SIG}"),
    ("JWE (five parts)", f"{HEADER}.{PAYLOAD}.{SIG}.{SIG}.{SIG}"),
    ("empty signature (unsecured JWS)", _jws(signature="")),
    ("empty payload", _jws(payload="")),
    ("empty header", _jws(header="")),
    ("bad base64 character", _jws(header=HEADER[:-1] + "*")),
    ("standard base64 alphabet", _jws(signature=SIG[:-2] + "+/")),
    ("padding", _jws(signature=SIG + "==")),
    ("padded header", _jws(header=_b64("{}") + "==")),
    ("base64 length 4n+1", _jws(signature=SIG[:-1])),
    ("whitespace inside", _jws(payload=PAYLOAD[:5] + " " + PAYLOAD[5:])),
    ("header not JSON", _jws(header=_b64("not json"))),
    ("payload not JSON", _jws(payload=_b64("{"))),
    ("header a JSON array", _jws(header=_b64("[1,2]"))),
    ("payload a JSON string", _jws(payload=_b64('"x"'))),
    ("payload JSON null", _jws(payload=_b64("null"))),
    ("payload JSON number", _jws(payload=_b64("1"))),
    ("duplicate header member", _jws(header=_b64('{"alg":"ES256","alg":"none"}'))),
    ("duplicate payload member", _jws(payload=_b64('{"jti":"a","jti":"b"}'))),
    ("duplicate nested member", _jws(header=_b64('{"jwk":{"x":"a","x":"b"}}'))),
    ("NaN", _jws(payload=_b64('{"iat":NaN}'))),
    ("Infinity", _jws(payload=_b64('{"iat":Infinity}'))),
    ("-Infinity", _jws(payload=_b64('{"iat":-Infinity}'))),
    ("trailing data", _jws(payload=_b64("{} {}"))),
    ("invalid UTF-8", _jws(payload=_b64(b'{"jti":"\xff"}'))),
    ("UTF-16", _jws(payload=_b64("{}".encode("utf-16")))),
    ("lone surrogate escape", _jws(payload=_b64('{"jti":"\\ud800"}'))),
    ("lone surrogate in the jwk", _jws(header=_b64('{"jwk":{"x":"\\udfff"}}'))),
    ("lone surrogate member name", _jws(payload=_b64('{"\\udc00":1}'))),
    ("deeply nested", _jws(payload=_b64('{"a":' + "[" * 100_000 + "]" * 100_000 + "}"))),
    ("non-ASCII", _jws(signature=SIG[:-1] + "é")),
]


@pytest.mark.parametrize(("why", "jws"), MALFORMED, ids=[why for why, _ in MALFORMED])
def test_malformed_proof(why: str, jws: str) -> None:
    assert _reason(proofs.parse_proof, jws) is Reason.PROOF_MALFORMED


def test_well_formed_proof_parses() -> None:
    jws = proofs.parse_proof(f"{HEADER}.{PAYLOAD}.{SIG}")
    assert jws.header["typ"] == "dpop+jwt"
    assert jws.payload["jti"] == "a"
    assert jws.signing_input == f"{HEADER}.{PAYLOAD}".encode()
    assert jws.signature == b"\x01" * 64


def test_paired_surrogate_escapes_are_valid_unicode() -> None:
    jws = proofs.parse_proof(_jws(payload=_b64('{"jti":"\\ud83d\\ude00"}')))
    assert jws.payload["jti"] == "\U0001f600"


# --- §4.3 (4)-(7): the JOSE header ----------------------------------------------------------


def _header(**members: Any) -> dict[str, Any]:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": proof_key().public_jwk}
    return with_members(header, members)


HEADERS = [
    ("typ missing", _header(typ=DROP), Reason.PROOF_TYP_INVALID),
    ("typ jwt", _header(typ="JWT"), Reason.PROOF_TYP_INVALID),
    ("typ at+jwt", _header(typ="at+jwt"), Reason.PROOF_TYP_INVALID),
    ("typ upper case", _header(typ="DPOP+JWT"), Reason.PROOF_TYP_INVALID),
    ("typ application/", _header(typ="application/dpop+jwt"), Reason.PROOF_TYP_INVALID),
    ("typ not a string", _header(typ=["dpop+jwt"]), Reason.PROOF_TYP_INVALID),
    ("alg missing", _header(alg=DROP), Reason.PROOF_ALG_NOT_ALLOWED),
    ("alg none", _header(alg="none"), Reason.PROOF_ALG_NOT_ALLOWED),
    ("alg None", _header(alg="None"), Reason.PROOF_ALG_NOT_ALLOWED),
    ("alg HS256", _header(alg="HS256"), Reason.PROOF_ALG_NOT_ALLOWED),
    ("alg unknown", _header(alg="ES256K"), Reason.PROOF_ALG_NOT_ALLOWED),
    ("alg lower case", _header(alg="es256"), Reason.PROOF_ALG_NOT_ALLOWED),
    ("alg not a string", _header(alg=256), Reason.PROOF_ALG_NOT_ALLOWED),
    ("alg Ed448 not allowed by default", _header(alg="Ed448"), Reason.PROOF_ALG_NOT_ALLOWED),
    ("crit present", _header(crit=["exp"]), Reason.PROOF_CRIT_UNSUPPORTED),
    ("crit empty", _header(crit=[]), Reason.PROOF_CRIT_UNSUPPORTED),
    ("jwk missing", _header(jwk=DROP), Reason.PROOF_JWK_MISSING),
    ("jwk a string", _header(jwk=json.dumps(proof_key().public_jwk)), Reason.PROOF_JWK_MISSING),
    ("jwk an array", _header(jwk=[proof_key().public_jwk]), Reason.PROOF_JWK_MISSING),
    ("jwk private (d)", _header(jwk=proof_key().private_jwk()), Reason.PROOF_JWK_PRIVATE),
    (
        "jwk private RSA",
        _header(alg="RS256", jwk=key("RS256").private_jwk()),
        Reason.PROOF_JWK_PRIVATE,
    ),
    ("jwk symmetric (k)", _header(jwk={"kty": "oct", "k": "c2VjcmV0"}), Reason.PROOF_JWK_PRIVATE),
]


@pytest.mark.parametrize(("why", "header", "expected"), HEADERS, ids=[w for w, _, _ in HEADERS])
def test_check_header_refuses(why: str, header: dict[str, Any], expected: Reason) -> None:
    assert _reason(proofs.check_header, header, ALLOWED) is expected


def test_alg_outside_the_configured_allowlist_is_refused() -> None:
    header = _header(alg="ES384", jwk=key("ES384").public_jwk)
    assert proofs.check_header(header, ALLOWED).alg == "ES384"
    assert (
        _reason(proofs.check_header, header, frozenset({"ES256"})) is Reason.PROOF_ALG_NOT_ALLOWED
    )


def test_allowlisted_alg_must_still_be_implemented() -> None:
    assert _reason(proofs.check_header, _header(alg="HS256"), frozenset({"HS256"})) is (
        Reason.PROOF_ALG_NOT_ALLOWED
    )


def test_key_hints_in_the_header_are_ignored_the_jwk_is_the_key() -> None:
    other = key("ES256", 1)
    header = _header(
        kid=other.jkt, jku="https://evil.example/jwks", x5u="https://evil.example/c", x5c=["MIIB"]
    )
    checked = proofs.check_header(header, ALLOWED)
    assert checked.jwk == proof_key().public_jwk


def test_check_header_returns_alg_and_jwk() -> None:
    checked = proofs.check_header(_header(), ALLOWED)
    assert (checked.alg, checked.jwk) == ("ES256", proof_key().public_jwk)


# --- §4.3 (8)-(11): the claims ---------------------------------------------------------------


def _claims(**members: Any) -> dict[str, Any]:
    return with_members({"jti": "j-1", "htm": "GET", "htu": RESOURCE_URL, "iat": NOW}, members)


def _check(
    payload: dict[str, Any], *, method: str = "GET", target: str = RESOURCE_URL, now: float = NOW
) -> proofs.ProofClaims:
    return proofs.check_claims(payload, method=method, target_uri=target, now=now, limits=LIMITS)


CLAIMS = [
    ("jti missing", _claims(jti=DROP), Reason.PROOF_JTI_INVALID),
    ("jti empty", _claims(jti=""), Reason.PROOF_JTI_INVALID),
    ("jti too long", _claims(jti="j" * (LIMITS.max_jti_chars + 1)), Reason.PROOF_JTI_INVALID),
    ("jti a number", _claims(jti=12345), Reason.PROOF_JTI_INVALID),
    ("jti an object", _claims(jti={"a": 1}), Reason.PROOF_JTI_INVALID),
    ("jti true", _claims(jti=True), Reason.PROOF_JTI_INVALID),
    ("jti null", _claims(jti=None), Reason.PROOF_JTI_INVALID),
    ("htm lower case", _claims(htm="get"), Reason.PROOF_HTM_MISMATCH),
    ("htm other method", _claims(htm="POST"), Reason.PROOF_HTM_MISMATCH),
    ("htm missing", _claims(htm=DROP), Reason.PROOF_HTM_MISMATCH),
    ("htm empty", _claims(htm=""), Reason.PROOF_HTM_MISMATCH),
    ("htm padded", _claims(htm=" GET"), Reason.PROOF_HTM_MISMATCH),
    ("htm not a string", _claims(htm=["GET"]), Reason.PROOF_CLAIMS_INVALID),
    ("htm too long", _claims(htm="G" * 33), Reason.PROOF_CLAIMS_INVALID),
    ("htu missing", _claims(htu=DROP), Reason.PROOF_HTU_MISMATCH),
    (
        "htu not a string",
        _claims(htu=["https://api.example.com/orders/42"]),
        Reason.PROOF_HTU_MISMATCH,
    ),
    ("htu other path", _claims(htu="https://api.example.com/orders/43"), Reason.PROOF_HTU_MISMATCH),
    (
        "htu other host",
        _claims(htu="https://evil.example.com/orders/42"),
        Reason.PROOF_HTU_MISMATCH,
    ),
    (
        "htu other scheme",
        _claims(htu="http://api.example.com/orders/42"),
        Reason.PROOF_HTU_MISMATCH,
    ),
    (
        "htu other port",
        _claims(htu="https://api.example.com:8443/orders/42"),
        Reason.PROOF_HTU_MISMATCH,
    ),
    (
        "htu trailing slash",
        _claims(htu="https://api.example.com/orders/42/"),
        Reason.PROOF_HTU_MISMATCH,
    ),
    ("htu path case", _claims(htu="https://api.example.com/Orders/42"), Reason.PROOF_HTU_MISMATCH),
    (
        "htu encoded slash",
        _claims(htu="https://api.example.com/orders%2F42"),
        Reason.PROOF_HTU_MISMATCH,
    ),
    (
        "htu non-http scheme",
        _claims(htu="ftp://api.example.com/orders/42"),
        Reason.PROOF_HTU_MISMATCH,
    ),
    (
        "htu userinfo",
        _claims(htu="https://u:p@api.example.com/orders/42"),
        Reason.PROOF_HTU_MISMATCH,
    ),
    ("htu relative", _claims(htu="/orders/42"), Reason.PROOF_HTU_MISMATCH),
    ("htu empty", _claims(htu=""), Reason.PROOF_HTU_MISMATCH),
    ("htu null", _claims(htu=None), Reason.PROOF_HTU_MISMATCH),
    ("iat missing", _claims(iat=DROP), Reason.PROOF_IAT_INVALID),
    ("iat a string", _claims(iat=str(NOW)), Reason.PROOF_IAT_INVALID),
    ("iat true", _claims(iat=True), Reason.PROOF_IAT_INVALID),
    ("iat false", _claims(iat=False), Reason.PROOF_IAT_INVALID),
    ("iat null", _claims(iat=None), Reason.PROOF_IAT_INVALID),
    ("iat an array", _claims(iat=[NOW]), Reason.PROOF_IAT_INVALID),
    ("iat too old", _claims(iat=NOW - 61), Reason.PROOF_IAT_TOO_OLD),
    ("iat zero", _claims(iat=0), Reason.PROOF_IAT_TOO_OLD),
    ("iat negative", _claims(iat=-NOW), Reason.PROOF_IAT_TOO_OLD),
    ("iat in the future", _claims(iat=NOW + 31), Reason.PROOF_IAT_IN_FUTURE),
    ("iat huge", _claims(iat=10**400), Reason.PROOF_IAT_IN_FUTURE),
    ("iat inf", _claims(iat=float("inf")), Reason.PROOF_IAT_IN_FUTURE),
    ("iat -inf", _claims(iat=float("-inf")), Reason.PROOF_IAT_TOO_OLD),
    ("ath not a string", _claims(ath=1), Reason.PROOF_CLAIMS_INVALID),
    ("ath too long", _claims(ath="a" * 129), Reason.PROOF_CLAIMS_INVALID),
    ("nonce not a string", _claims(nonce={"n": 1}), Reason.PROOF_CLAIMS_INVALID),
    # RFC 9449 §4.2: nonce is a string, checked whether or not a nonce is required (issue 19).
    ("nonce null", _claims(nonce=None), Reason.PROOF_CLAIMS_INVALID),
    ("nonce a number", _claims(nonce=5), Reason.PROOF_CLAIMS_INVALID),
    ("nonce true", _claims(nonce=True), Reason.PROOF_CLAIMS_INVALID),
    ("nonce an array", _claims(nonce=["n"]), Reason.PROOF_CLAIMS_INVALID),
    ("ath null", _claims(ath=None), Reason.PROOF_CLAIMS_INVALID),
    ("nonce too long", _claims(nonce="n" * 513), Reason.PROOF_CLAIMS_INVALID),
]


@pytest.mark.parametrize(("why", "payload", "expected"), CLAIMS, ids=[w for w, _, _ in CLAIMS])
def test_check_claims_refuses(why: str, payload: dict[str, Any], expected: Reason) -> None:
    assert _reason(_check, payload) is expected


def test_valid_claims() -> None:
    claims = _check(_claims(ath="x", nonce="n"))
    assert claims == proofs.ProofClaims(
        jti="j-1", htm="GET", htu=RESOURCE_URL, iat=float(NOW), ath="x", nonce="n"
    )


def test_jti_length_limit_is_inclusive() -> None:
    assert _check(_claims(jti="j" * LIMITS.max_jti_chars)).jti == "j" * LIMITS.max_jti_chars


def test_absent_ath_and_nonce_are_none() -> None:
    claims = _check(_claims())
    assert (claims.ath, claims.nonce) == (None, None)


def test_default_future_iat_allowance_serves_drifting_clocks() -> None:
    """Issue 19: 30 s ahead is accepted by default (go-dpop and auth0 allow 30 s, Duende and
    Spring 60 s), and the replay record outlives the whole window."""
    assert LIMITS.iat_max_skew == 30.0
    assert _check(_claims(iat=NOW + 30)).iat == NOW + 30
    assert proofs.replay_ttl(LIMITS) == 60 + 30 + 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "QUERY"])
def test_htm_is_the_exact_method(method: str) -> None:
    assert _check(_claims(htm=method), method=method).htm == method
    assert _reason(_check, _claims(htm=method.lower()), method=method) is Reason.PROOF_HTM_MISMATCH


@pytest.mark.parametrize(
    ("htu", "target"),
    [
        (RESOURCE_URL, RESOURCE_URL + "?page=2"),
        (RESOURCE_URL + "?page=1", RESOURCE_URL + "?page=2"),
        (RESOURCE_URL + "#top", RESOURCE_URL),
        (RESOURCE_URL, RESOURCE_URL + "#frag"),
        ("HTTPS://API.Example.com:443/orders/./42", RESOURCE_URL),
        ("https://api.example.com/orders/x/../42", "https://api.example.com:443/orders/%34%32"),
    ],
)
def test_query_fragment_and_normalization_are_ignored(htu: str, target: str) -> None:
    assert _check(_claims(htu=htu), target=target).htu == RESOURCE_URL


@pytest.mark.parametrize(
    "target",
    ["", "/orders/42", "ftp://api.example.com/orders/42", "https://u@api.example.com/orders/42"],
)
def test_invalid_target_uri_is_an_htu_mismatch(target: str) -> None:
    assert _reason(_check, _claims(), target=target) is Reason.PROOF_HTU_MISMATCH


def test_iat_window_edges() -> None:
    max_age, skew = LIMITS.iat_max_age, LIMITS.iat_max_skew
    assert _check(_claims(iat=NOW - max_age)).iat == NOW - max_age  # exactly max_age old
    assert _reason(_check, _claims(iat=NOW - max_age - 0.001)) is Reason.PROOF_IAT_TOO_OLD
    assert _check(_claims(iat=NOW + skew)).iat == NOW + skew  # exactly at the skew
    assert _reason(_check, _claims(iat=NOW + skew + 0.001)) is Reason.PROOF_IAT_IN_FUTURE
    # The same edges with an integer iat and a moving clock.
    assert _check(_claims(), now=NOW + max_age).iat == NOW
    assert _reason(_check, _claims(), now=NOW + max_age + 0.5) is Reason.PROOF_IAT_TOO_OLD
    assert _check(_claims(), now=NOW - skew).iat == NOW
    assert _reason(_check, _claims(), now=NOW - skew - 0.5) is Reason.PROOF_IAT_IN_FUTURE


def test_custom_limits_move_the_edges() -> None:
    limits = proofs.ProofLimits(max_jti_chars=8, iat_max_age=10, iat_max_skew=0)
    kwargs: dict[str, Any] = {"method": "GET", "target_uri": RESOURCE_URL, "limits": limits}
    proofs.check_claims(_claims(jti="12345678"), now=NOW, **kwargs)
    assert _reason(proofs.check_claims, _claims(jti="123456789"), now=NOW, **kwargs) is (
        Reason.PROOF_JTI_INVALID
    )
    assert (
        _reason(proofs.check_claims, _claims(), now=NOW + 11, **kwargs) is Reason.PROOF_IAT_TOO_OLD
    )
    assert (
        _reason(proofs.check_claims, _claims(), now=NOW - 1, **kwargs) is Reason.PROOF_IAT_IN_FUTURE
    )


def test_checks_run_in_order_jti_htm_htu_iat() -> None:
    everything_wrong = {"jti": "", "htm": "get", "htu": "ftp://x", "iat": "now"}
    assert _reason(_check, everything_wrong) is Reason.PROOF_JTI_INVALID
    assert _reason(_check, {**everything_wrong, "jti": "j"}) is Reason.PROOF_HTM_MISMATCH
    assert (
        _reason(_check, {**everything_wrong, "jti": "j", "htm": "GET"}) is Reason.PROOF_HTU_MISMATCH
    )


# --- §4.3 (12): ath, §6.1: the binding -------------------------------------------------------


def test_ath() -> None:
    token = "an.access.token"
    good = _check(_claims(ath=proofs.access_token_hash(token)))
    proofs.check_ath(good, token)
    assert _reason(proofs.check_ath, _check(_claims()), token) is Reason.PROOF_ATH_MISSING
    assert _reason(proofs.check_ath, good, token + "x") is Reason.PROOF_ATH_MISMATCH
    assert _reason(proofs.check_ath, _check(_claims(ath="")), token) is Reason.PROOF_ATH_MISMATCH
    padded = _check(_claims(ath=proofs.access_token_hash(token) + "="))
    assert _reason(proofs.check_ath, padded, token) is Reason.PROOF_ATH_MISMATCH


def test_check_binding() -> None:
    proofs.check_binding(proof_key().jkt, proof_key().jkt)
    assert (
        _reason(proofs.check_binding, key("ES256", 1).jkt, proof_key().jkt) is Reason.JKT_MISMATCH
    )
    assert _reason(proofs.check_binding, proof_key().jkt.lower(), proof_key().jkt) is (
        Reason.JKT_MISMATCH
    )


# --- replay keys ------------------------------------------------------------------------------


def test_replay_ttl_covers_the_whole_acceptance_window() -> None:
    assert proofs.replay_ttl(LIMITS) == LIMITS.iat_max_age + LIMITS.iat_max_skew + 1


def test_replay_key_is_scoped_by_key_uri_and_jti() -> None:
    base = proofs.replay_key("jkt", "https://a/", "jti")
    assert len(base) == 32
    assert base == proofs.replay_key("jkt", "https://a/", "jti")
    assert base != proofs.replay_key("jkt2", "https://a/", "jti")
    assert base != proofs.replay_key("jkt", "https://b/", "jti")
    assert base != proofs.replay_key("jkt", "https://a/", "jti2")
    # Length prefixes: moving a boundary between parts changes the key.
    assert proofs.replay_key("ab", "c", "d") != proofs.replay_key("a", "bc", "d")
    assert len(proofs.replay_key("k", "u", "j" * 100_000)) == 32


# --- the signature (§4.3 (6)) -----------------------------------------------------------------


def test_parse_compact_keeps_the_exact_signing_input() -> None:
    raw = sign_raw(b'{"typ":"dpop+jwt" , "alg":"ES256"}', b'{"iat": 1}', proof_key())
    jws = parse_compact(raw)
    assert jws.signing_input == raw.rsplit(".", 1)[0].encode()
