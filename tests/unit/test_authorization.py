"""Parsing of the Authorization header (RFC 9110 §11.6.2, RFC 6750 §2.1, RFC 9449 §7.1)."""

from __future__ import annotations

import pytest

from verifier.domain.reasons import Denial, Reason
from verifier.dpop.authorization import Credentials, Scheme, parse_authorization

MAX = 64
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"


@pytest.mark.parametrize("values", [(), ("",), ("   ",), ("", "\t")])
def test_no_authorization_header(values: tuple[str, ...]) -> None:
    assert parse_authorization(values, MAX) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"DPoP {TOKEN}", Credentials(Scheme.DPOP, TOKEN)),
        (f"dpop {TOKEN}", Credentials(Scheme.DPOP, TOKEN)),
        (f"DPOP {TOKEN}", Credentials(Scheme.DPOP, TOKEN)),
        (f"Bearer {TOKEN}", Credentials(Scheme.BEARER, TOKEN)),
        (f"bEaReR {TOKEN}", Credentials(Scheme.BEARER, TOKEN)),
        (f"DPoP   {TOKEN}", Credentials(Scheme.DPOP, TOKEN)),
        (f"  DPoP {TOKEN}  ", Credentials(Scheme.DPOP, TOKEN)),
        (
            "DPoP Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU",
            Credentials(Scheme.DPOP, "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        ),
        ("Bearer abc+/==", Credentials(Scheme.BEARER, "abc+/==")),
    ],
)
def test_credentials(value: str, expected: Credentials) -> None:
    assert parse_authorization((value,), MAX) == expected


def test_blank_extra_values_are_ignored() -> None:
    assert parse_authorization(("", f"DPoP {TOKEN}"), MAX) == Credentials(Scheme.DPOP, TOKEN)


def _reason(values: tuple[str, ...], max_bytes: int = MAX) -> Reason:
    with pytest.raises(Denial) as caught:
        parse_authorization(values, max_bytes)
    return caught.value.reason


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((f"DPoP {TOKEN}", f"DPoP {TOKEN}"), Reason.AUTHORIZATION_MULTIPLE),
        ((f"DPoP {TOKEN}", f"Bearer {TOKEN}"), Reason.AUTHORIZATION_MULTIPLE),
        ((f"DPoP {TOKEN}, Bearer {TOKEN}",), Reason.AUTHORIZATION_MULTIPLE),
        ((f"DPoP {TOKEN},",), Reason.AUTHORIZATION_MULTIPLE),
        (("DPoP",), Reason.AUTHORIZATION_MALFORMED),
        (("DPoP ",), Reason.AUTHORIZATION_MALFORMED),
        ((TOKEN,), Reason.AUTHORIZATION_MALFORMED),
        (("DPoP a b",), Reason.AUTHORIZATION_MALFORMED),
        (("DPoP\tabc",), Reason.AUTHORIZATION_MALFORMED),
        (("DPoP a=b",), Reason.AUTHORIZATION_MALFORMED),
        (("DPoP =abc",), Reason.AUTHORIZATION_MALFORMED),
        (('DPoP "abc"',), Reason.AUTHORIZATION_MALFORMED),
        (("DPoP abc\x00",), Reason.AUTHORIZATION_MALFORMED),
        (("DPoP abc\r\nX-Injected: 1",), Reason.AUTHORIZATION_MALFORMED),
        (("DPoP ab\u00e9",), Reason.AUTHORIZATION_MALFORMED),
        (("D(o)P abc",), Reason.AUTHORIZATION_MALFORMED),
        ((f",DPoP {TOKEN}",), Reason.AUTHORIZATION_MULTIPLE),
        (("DPoP a=1, b=2",), Reason.AUTHORIZATION_MULTIPLE),
        (("Digest a=1, Bearer x",), Reason.AUTHORIZATION_MULTIPLE),
        ((f"Basic dXNlcjpwYXNz, DPoP {TOKEN}",), Reason.AUTHORIZATION_MULTIPLE),
        ((f'Digest realm="a, b", DPoP {TOKEN}',), Reason.AUTHORIZATION_MULTIPLE),
        (("Basic dXNlcjpwYXNz",), Reason.AUTHORIZATION_SCHEME_UNSUPPORTED),
        (("Digest a=1, b=2",), Reason.AUTHORIZATION_SCHEME_UNSUPPORTED),
        (("digest username=x,realm=y",), Reason.AUTHORIZATION_SCHEME_UNSUPPORTED),
        (
            ('Digest username="a, b", realm="x\\"y", qop=auth',),
            Reason.AUTHORIZATION_SCHEME_UNSUPPORTED,
        ),
        (("Digest a = 1,, b=2,",), Reason.AUTHORIZATION_SCHEME_UNSUPPORTED),
        (("Digest a",), Reason.AUTHORIZATION_SCHEME_UNSUPPORTED),
        (('Digest a="open, b=2',), Reason.AUTHORIZATION_MALFORMED),
        (('Digest a="x\r\ny"',), Reason.AUTHORIZATION_MALFORMED),
        (("Digest a=1 b=2",), Reason.AUTHORIZATION_MALFORMED),
        (("Basic dXNlcjpwYXNz, a=1",), Reason.AUTHORIZATION_MALFORMED),
        (("Bearer a=1",), Reason.AUTHORIZATION_MALFORMED),
        (("Negotiate",), Reason.AUTHORIZATION_MALFORMED),
        (("Negotiate YIIB",), Reason.AUTHORIZATION_SCHEME_UNSUPPORTED),
        ((f"DPoPx {TOKEN}",), Reason.AUTHORIZATION_SCHEME_UNSUPPORTED),
        ((f"Bearer- {TOKEN}",), Reason.AUTHORIZATION_SCHEME_UNSUPPORTED),
        (("DPoP " + "a" * (MAX + 1),), Reason.TOKEN_TOO_LARGE),
        (("DPoP " + "a b" * MAX,), Reason.TOKEN_TOO_LARGE),
        (("x" * (MAX + 17),), Reason.TOKEN_TOO_LARGE),
    ],
)
def test_authorization_refused(values: tuple[str, ...], expected: Reason) -> None:
    assert _reason(values) is expected


def test_token_size_limit_is_inclusive() -> None:
    token = "a" * MAX
    assert parse_authorization((f"DPoP {token}",), MAX) == Credentials(Scheme.DPOP, token)
    assert _reason((f"DPoP {token}a",)) is Reason.TOKEN_TOO_LARGE
