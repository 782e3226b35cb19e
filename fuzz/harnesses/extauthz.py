"""Envoy's ``CheckRequest`` -> request facts (verifier/doors/extauthz_facts.py) -> a decision.

Input: a serialized ``envoy.service.auth.v3.CheckRequest``, as gRPC hands it to the servicer
(bytes that do not parse never reach it). The facts then go through the whole engine, with
the fixed issuer, a memory replay store and nonces. Documented outcomes: none. Reading a
request never raises, and the engine answers every request with a decision other than
``internal_error`` (which is what it answers after an unexpected exception).
"""

from __future__ import annotations

import functools

from google.protobuf.message import DecodeError

from fuzz.fixtures import NONCE_KEYS, NOW, TOKEN_LEEWAY, trusted_issuer
from fuzz.harness import Harness
from fuzz.harnesses.htu import PUBLIC_BASE_URLS, ROUTES, TRUST_FORWARDED
from verifier._generated.envoy.service.auth.v3 import external_auth_pb2 as pb
from verifier.domain.reasons import Reason
from verifier.doors.extauthz_facts import check_request_facts, request_headers
from verifier.doors.target_uri import PublicUrlOptions
from verifier.engine.pipeline import EngineSettings, Verifier
from verifier.replay.memory import MemoryReplayStore
from verifier.tokens.validator import TokenValidator

ENGINE = Verifier(
    EngineSettings(nonce_keys=NONCE_KEYS),
    tokens=TokenValidator([trusted_issuer()], leeway=TOKEN_LEEWAY),
    replay=MemoryReplayStore(max_entries=100_000),
    clock=lambda: NOW,
)


def check(data: bytes, public_url: PublicUrlOptions) -> None:
    """The servicer's path for one ``Check`` call, without gRPC."""
    try:
        request = pb.CheckRequest.FromString(data)
    except DecodeError:
        return
    headers = request_headers(request.attributes.request.http)
    assert all(name == name.lower() for name in headers)
    facts = check_request_facts(request, headers, routes=ROUTES, public_url=public_url)
    assert facts.authorization == headers.get("authorization", ())
    assert facts.dpop == headers.get("dpop", ())
    decision = ENGINE.verify(facts)
    # verify() logs the exception (with its traceback) before answering internal_error.
    assert decision.reason is not Reason.INTERNAL_ERROR, decision.message


HARNESS = Harness(
    "extauthz",
    (
        functools.partial(check, public_url=TRUST_FORWARDED),
        functools.partial(check, public_url=PUBLIC_BASE_URLS),
    ),
    (),
    max_len=16384,
)
