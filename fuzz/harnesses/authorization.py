"""The ``Authorization`` header (verifier/dpop/authorization.py; RFC 9110 §11.6.2, RFC 6750
§2.1, RFC 9449 §7.1).

Input: the header values, one per line. Documented outcome:
:class:`~verifier.domain.reasons.Denial`.
"""

from __future__ import annotations

import functools
import re

from fuzz.fixtures import MAX_TOKEN_BYTES
from fuzz.harness import Harness, text
from verifier.domain.reasons import Denial
from verifier.dpop.authorization import Scheme, parse_authorization

_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def parse(data: bytes, max_token_bytes: int) -> None:
    """A value that is accepted yields a DPoP or Bearer token68 within the size limit."""
    credentials = parse_authorization(tuple(text(data).split("\n")), max_token_bytes)
    if credentials is not None:
        assert credentials.scheme in (Scheme.DPOP, Scheme.BEARER)
        assert _TOKEN68.fullmatch(credentials.token), credentials
        assert len(credentials.token) <= max_token_bytes


HARNESS = Harness(
    "authorization",
    (
        functools.partial(parse, max_token_bytes=MAX_TOKEN_BYTES),
        functools.partial(parse, max_token_bytes=48),  # reaches token_too_large
    ),
    (Denial,),
)
