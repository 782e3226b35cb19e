"""Server nonces (verifier/dpop/nonce.py; RFC 9449 §8, §9).

Input: a proof's ``nonce`` claim (none when empty). Documented outcome:
:class:`~verifier.domain.reasons.Denial` (``nonce_required``, ``nonce_invalid``,
``nonce_expired``).
"""

from __future__ import annotations

from fuzz.fixtures import NONCE_KEYS, NOW
from fuzz.harness import Harness, text
from verifier.domain.reasons import Denial
from verifier.dpop.nonce import NonceKeys, check_nonce, issue_nonce

ROTATED = NonceKeys(
    current=b"dpop-verifier fuzz nonce secret, the next one", previous=NONCE_KEYS.current
)
"""The secrets after one rotation: :data:`NONCE_KEYS`'s current one is the previous one."""


def check(data: bytes) -> None:
    """A nonce is accepted only with an age inside its lifetime, under both key sets."""
    nonce = text(data) or None
    for keys in (NONCE_KEYS, ROTATED):
        age = check_nonce(keys, nonce, NOW)
        assert -(keys.future_skew + keys.step) <= age <= keys.lifetime, age


def round_trip(data: bytes) -> None:
    """A nonce issued at any instant between 2006 and 2142 is accepted then, also
    after one rotation of the secret."""
    now = NOW + int.from_bytes(data[:4], "big") - 2**29
    nonce = issue_nonce(NONCE_KEYS, now)
    assert 0 <= check_nonce(NONCE_KEYS, nonce, now) < NONCE_KEYS.step
    assert 0 <= check_nonce(ROTATED, nonce, now) < NONCE_KEYS.step


HARNESS = Harness("nonce", (check, round_trip), (Denial,), max_len=1024)
