"""Stateless HMAC nonces (RFC 9449 §8, §9): issue, accept, expire, rotate, refresh."""

from __future__ import annotations

import pytest

from tests.unit.helpers import NOW
from verifier.domain.reasons import Denial, Reason
from verifier.dpop.nonce import (
    NONCE_LENGTH,
    NonceKeys,
    check_nonce,
    issue_nonce,
    nonce_issued_at,
    should_refresh,
)
from verifier.jose.rfc7515 import b64url_decode, b64url_encode

SECRET_A = b"a" * 32
SECRET_B = b"b" * 32
SECRET_C = b"c" * 32
KEYS = NonceKeys(current=SECRET_A)  # lifetime 300 s, step 10 s, future skew 5 s


def _reason(keys: NonceKeys, nonce: str | None, now: float) -> Reason:
    with pytest.raises(Denial) as caught:
        check_nonce(keys, nonce, now)
    return caught.value.reason


def test_issued_nonce_is_accepted() -> None:
    nonce = issue_nonce(KEYS, NOW)
    assert len(nonce) == NONCE_LENGTH
    age = check_nonce(KEYS, nonce, NOW)
    assert 0 <= age < KEYS.step


def test_nonce_is_the_same_within_a_step_and_changes_across_steps() -> None:
    start = NOW - NOW % KEYS.step
    assert issue_nonce(KEYS, start) == issue_nonce(KEYS, start + KEYS.step - 0.001)
    assert issue_nonce(KEYS, start) != issue_nonce(KEYS, start + KEYS.step)
    assert nonce_issued_at(KEYS, issue_nonce(KEYS, start + 3)) == start


def test_any_replica_with_the_secret_accepts_it() -> None:
    other_replica = NonceKeys(current=SECRET_A)
    check_nonce(other_replica, issue_nonce(KEYS, NOW), NOW)


def test_missing_nonce_is_required() -> None:
    assert _reason(KEYS, None, NOW) is Reason.NONCE_REQUIRED


def _forge(version: bytes = b"\x01", step: int | None = None, mac: bytes = b"\0" * 16) -> str:
    step = int(NOW // KEYS.step) if step is None else step
    return b64url_encode(version + step.to_bytes(8, "big") + mac)


def _tamper(nonce: str, index: int) -> str:
    raw = bytearray(b64url_decode(nonce))
    raw[index] ^= 0x01
    return b64url_encode(bytes(raw))


@pytest.mark.parametrize(
    ("why", "nonce"),
    [
        ("empty", ""),
        ("the RFC's example nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v"),
        ("too short", issue_nonce(KEYS, NOW)[:-1]),
        ("too long", issue_nonce(KEYS, NOW) + "A"),
        ("not base64url", "*" * NONCE_LENGTH),
        ("padding", issue_nonce(KEYS, NOW)[:-1] + "="),
        ("zero MAC", _forge()),
        ("MAC bit flipped", _tamper(issue_nonce(KEYS, NOW), -1)),
        ("time step changed", _tamper(issue_nonce(KEYS, NOW), 8)),
        ("version changed", _tamper(issue_nonce(KEYS, NOW), 0)),
        ("unknown version", _forge(version=b"\x02")),
        ("another secret", issue_nonce(NonceKeys(current=SECRET_B), NOW)),
    ],
)
def test_nonce_not_issued_by_us_is_invalid(why: str, nonce: str) -> None:
    assert _reason(KEYS, nonce, NOW) is Reason.NONCE_INVALID


def test_lifetime_edges() -> None:
    nonce = issue_nonce(KEYS, NOW)
    issued = nonce_issued_at(KEYS, nonce)
    assert check_nonce(KEYS, nonce, issued + KEYS.lifetime) == KEYS.lifetime
    assert _reason(KEYS, nonce, issued + KEYS.lifetime + 0.001) is Reason.NONCE_EXPIRED
    assert _reason(KEYS, nonce, issued + 10 * KEYS.lifetime) is Reason.NONCE_EXPIRED


def test_nonce_from_a_replica_slightly_ahead_is_accepted_but_not_far_ahead() -> None:
    nonce = issue_nonce(KEYS, NOW)
    issued = nonce_issued_at(KEYS, nonce)
    earliest = issued - KEYS.future_skew - KEYS.step
    assert check_nonce(KEYS, nonce, earliest) == -(KEYS.future_skew + KEYS.step)
    assert _reason(KEYS, nonce, earliest - 0.001) is Reason.NONCE_EXPIRED


def test_rotation_keeps_previous_secret_nonces_valid() -> None:
    old_nonce = issue_nonce(KEYS, NOW)
    rotated = NonceKeys(current=SECRET_B, previous=SECRET_A)
    check_nonce(rotated, old_nonce, NOW + 1)
    new_nonce = issue_nonce(rotated, NOW)
    assert new_nonce != old_nonce
    check_nonce(rotated, new_nonce, NOW + 1)
    # Replicas that have not rotated yet do not know the new secret.
    assert _reason(KEYS, new_nonce, NOW) is Reason.NONCE_INVALID
    # A second rotation drops the first secret.
    rotated_twice = NonceKeys(current=SECRET_C, previous=SECRET_B)
    assert _reason(rotated_twice, old_nonce, NOW + 1) is Reason.NONCE_INVALID
    check_nonce(rotated_twice, new_nonce, NOW + 1)


def test_previous_secret_nonce_still_expires() -> None:
    old_nonce = issue_nonce(KEYS, NOW)
    rotated = NonceKeys(current=SECRET_B, previous=SECRET_A)
    assert _reason(rotated, old_nonce, NOW + KEYS.lifetime + KEYS.step) is Reason.NONCE_EXPIRED


def test_refresh_only_past_half_the_lifetime() -> None:
    half = KEYS.lifetime / 2
    assert not should_refresh(KEYS, 0)
    assert not should_refresh(KEYS, -KEYS.step)
    assert not should_refresh(KEYS, half)
    assert should_refresh(KEYS, half + 0.001)
    assert should_refresh(KEYS, KEYS.lifetime)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"current": b"short"},
        {"current": b"x" * 31},
        {"current": SECRET_A, "previous": b"short"},
        {"current": SECRET_A, "step": 0},
        {"current": SECRET_A, "step": -1},
        {"current": SECRET_A, "step": 301, "lifetime": 300},
    ],
)
def test_bad_nonce_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        NonceKeys(**kwargs)  # type: ignore[arg-type]


def test_secrets_are_not_in_the_repr() -> None:
    assert "aaaa" not in repr(NonceKeys(current=SECRET_A, previous=SECRET_B))
