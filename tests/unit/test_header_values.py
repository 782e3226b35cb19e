"""Header values as received: optional whitespace is SP and HTAB only (RFC 9110 §5.6.3), and
every ``DPoP`` field counts, an empty one too (RFC 9449 §4.3 (1))."""

from __future__ import annotations

import pytest

from tests.unit.helpers import (
    assert_allowed,
    assert_denied,
    make_proof,
    make_token,
    make_verifier,
    resource_facts,
)
from verifier.domain.reasons import Denial, Reason
from verifier.doors.target_uri import PublicUrlOptions, public_target_uri
from verifier.dpop import proof as proofs
from verifier.dpop.authorization import Credentials, Scheme, parse_authorization
from verifier.dpop.request import strip_ows

# White space that str.strip() removes but RFC 9110 OWS does not allow.
NOT_OWS = ["\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2003", "\u2028", "\u3000", "\r", "\n"]
MAX = 8192


def _valid() -> tuple[str, str]:
    token = make_token()
    return token, make_proof(access_token=token)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", "a"),
        (" \ta\t ", "a"),
        ("a b", "a b"),
        ("\x0ba\xa0", "\x0ba\xa0"),
        ("\u3000 a \u3000", "\u3000 a \u3000"),
        (" \t", ""),
    ],
)
def test_strip_ows(value: str, expected: str) -> None:
    assert strip_ows(value) == expected


# --- DPoP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", NOT_OWS, ids=[f"U+{ord(c):04X}" for c in NOT_OWS])
@pytest.mark.parametrize("where", ["before", "after"])
def test_other_white_space_around_the_proof_is_malformed(space: str, where: str) -> None:
    token, proof = _valid()
    value = space + proof if where == "before" else proof + space
    decision = make_verifier().verify(resource_facts(token=token, dpop=(value,)))
    assert_denied(decision, Reason.PROOF_MALFORMED)


def test_sp_and_htab_around_the_proof_are_optional_white_space() -> None:
    token, proof = _valid()
    decision = make_verifier().verify(resource_facts(token=token, dpop=(f" \t{proof}\t ",)))
    assert_allowed(decision)


@pytest.mark.parametrize("extra", ["", " ", "\t"])
@pytest.mark.parametrize("first", [True, False])
def test_an_extra_empty_dpop_field_is_a_second_field(extra: str, first: bool) -> None:
    token, proof = _valid()
    fields = (extra, proof) if first else (proof, extra)
    decision = make_verifier().verify(resource_facts(token=token, dpop=fields))
    assert_denied(decision, Reason.PROOF_MULTIPLE)


@pytest.mark.parametrize("values", [(), ("",), (" \t",), ("", "")])
def test_no_proof_at_all_is_missing(values: tuple[str, ...]) -> None:
    with pytest.raises(Denial) as caught:
        proofs.select_single_proof(values, MAX)
    assert caught.value.reason is Reason.PROOF_MISSING


# --- Authorization --------------------------------------------------------------------------


@pytest.mark.parametrize("space", NOT_OWS, ids=[f"U+{ord(c):04X}" for c in NOT_OWS])
@pytest.mark.parametrize(
    "template", ["{s}DPoP {t}", "DPoP {t}{s}", "{s}Bearer {t}", "Bearer {t}{s}", "DPoP{s}{t}"]
)
def test_other_white_space_in_authorization_is_malformed(space: str, template: str) -> None:
    value = template.format(s=space, t="eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
    with pytest.raises(Denial) as caught:
        parse_authorization((value,), MAX)
    assert caught.value.reason is Reason.AUTHORIZATION_MALFORMED


def test_other_white_space_around_the_token_is_denied_by_the_engine() -> None:
    token, proof = _valid()
    facts = resource_facts(token=token, proof=proof, authorization=(f"DPoP {token}\u3000",))
    assert_denied(make_verifier().verify(facts), Reason.AUTHORIZATION_MALFORMED)


def test_sp_and_htab_around_authorization_are_optional_white_space() -> None:
    value = " \tDPoP abc\t "
    assert parse_authorization((value,), MAX) == Credentials(Scheme.DPOP, "abc")


# --- forwarding headers (trusted ones only) --------------------------------------------------


@pytest.mark.parametrize("space", ["\x0b", "\xa0", "\u3000"])
def test_other_white_space_makes_a_forwarding_value_unusable(space: str) -> None:
    options = PublicUrlOptions(trusted_headers=frozenset({"x-forwarded-proto"}))
    headers = {"x-forwarded-proto": (f"https{space}",)}
    assert public_target_uri("http", "svc", "/o", headers, options) == "http://svc/o"
    ows = {"x-forwarded-proto": (" https\t",)}
    assert public_target_uri("http", "svc", "/o", ows, options) == "https://svc/o"
