"""The decision engine: :class:`RequestFacts` in, :class:`Decision` out.

It runs the pure checks of :mod:`verifier.dpop`, :mod:`verifier.tokens` and :mod:`verifier.mtls`
in the order cheap -> expensive -> stateful (RFC 9449 §4.3, §7.1): the request (and on a
``fapi2`` route, no token in its query), the Authorization header, the proof's syntax, header and
signature, its claims and nonce, the access token, the route's issuer and algorithm rules, its
bindings (``cnf.jkt`` to the proof, ``cnf["x5t#S256"]`` to the client certificate), and only then
the atomic replay record. The first failed check decides the reason.

The route's sender constraint (:class:`~verifier.domain.model.SenderConstraint`) says which
binding a token must carry: ``dpop`` (a proof, as always), ``mtls`` (a certificate binding,
RFC 8705; the token travels as ``Bearer``), ``either``, or ``none``. Whatever the route, a token
carrying a binding is checked against it, and a token bound both ways must satisfy both.

The checks themselves do no I/O: the only I/O of a decision is behind the two ports, the access
token validator and the replay store, called synchronously on the calling (worker) thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.domain.model import (
    FAPI2_ALGS,
    CheckOutcome,
    Decision,
    Mode,
    Profile,
    RequestFacts,
    SenderConstraint,
    TokenClaims,
    allowed,
    denied,
)
from verifier.domain.ports import (
    AccessTokenValidator,
    Instrumentation,
    ReplayStore,
    ReplayStoreUnavailable,
)
from verifier.domain.reasons import CATALOGUE, Denial, Reason, RfcError
from verifier.dpop import proof as proofs
from verifier.dpop.authorization import Scheme, parse_authorization
from verifier.dpop.challenge import dpop_challenge
from verifier.dpop.nonce import NonceKeys, check_nonce, issue_nonce, should_refresh
from verifier.dpop.request import check_request
from verifier.engine.alarms import FAIL_OPEN_ALARM, ThrottledAlarm
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS, PublicKey, verify_signature
from verifier.jose.rfc7517 import InvalidJwk, public_key_for_alg
from verifier.jose.rfc7638 import thumbprint
from verifier.mtls import CertificateError, ClientCertificate, check_certificate_binding
from verifier.tokens.profile import check_no_token_in_query, check_route_token

log = logging.getLogger(__name__)


class _NoInstrumentation:
    def stage(self, name: str) -> AbstractContextManager[object]:
        return contextlib.nullcontext()

    def proof_key(self, alg: str, jkt: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Everything the engine enforces, fixed at start-up."""

    proof_algs: tuple[str, ...] = DEFAULT_PROOF_ALGS
    limits: proofs.ProofLimits = field(default_factory=proofs.ProofLimits)
    max_token_bytes: int = 16384
    nonce_keys: NonceKeys | None = None
    """Nonce secrets; required when any policy requires a nonce."""
    replay_fail_open: bool = False
    """Allow proofs when the replay store is down (availability over replay protection)."""
    key_cache_size: int = 4096


@dataclass(frozen=True, slots=True)
class _ProofKey:
    """What a proof's JOSE header yields once checked: its algorithm, key and thumbprint."""

    alg: str
    key: PublicKey
    jkt: str


_MEMO_HEADER_CHARS = 2048
"""Proof headers up to this size (base64url) are memoized: an RSA-4096 ``jwk`` fits."""


@dataclass(frozen=True, slots=True)
class _VerifiedProof:
    alg: str
    jkt: str
    claims: proofs.ProofClaims
    nonce_to_offer: str = ""


@dataclass(frozen=True, slots=True)
class _Outcome:
    proof: _VerifiedProof | None
    claims: TokenClaims | None


class _Trail:
    """Collects the explain table when asked to; otherwise only remembers the current step."""

    __slots__ = ("checks", "enabled", "step")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.step = ""
        self.checks: list[CheckOutcome] = []

    def begin(self, step: str) -> None:
        self.step = step

    def passed(self, note: str = "") -> None:
        if self.enabled:
            self.checks.append(CheckOutcome(self.step, True, note))

    def failed(self, note: str) -> None:
        if self.enabled:
            self.checks.append(CheckOutcome(self.step, False, note))


def _fapi2_proof_key(known: _ProofKey) -> bool:
    """FAPI 2.0 §5.4.1: PS256, ES256 or EdDSA with Ed25519 (RFC 9864's ``Ed25519`` too). Key
    sizes hold already: RSA keys of 2048 bits or more (:data:`~verifier.jose.rfc7517.MIN_RSA_BITS`)
    and P-256 for ES256."""
    if known.alg in ("EdDSA", "Ed25519"):
        return isinstance(known.key, Ed25519PublicKey)
    return known.alg in FAPI2_ALGS


class Verifier:
    """Verifies one request at a time; safe to share across concurrent calls."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        tokens: AccessTokenValidator,
        replay: ReplayStore,
        clock: Callable[[], float] = time.time,
        instrumentation: Instrumentation | None = None,
    ) -> None:
        self.settings = settings
        self._tokens = tokens
        self._instrumentation = instrumentation or _NoInstrumentation()
        self._replay = replay
        self._clock = clock
        self._allowed_algs = frozenset(settings.proof_algs)
        self._proof_keys: dict[str, _ProofKey] = {}
        """Memo of the pure header checks: a proof header (its exact base64url text) that
        passed them -> its key. A client signs every proof with the same header."""
        self._fapi2_limits = proofs.fapi2_limits(settings.limits)
        self._replay_ttl = max(
            proofs.replay_ttl(settings.limits), proofs.replay_ttl(self._fapi2_limits)
        )
        self._fail_open_alarm = ThrottledAlarm(log, FAIL_OPEN_ALARM)

    def verify(self, facts: RequestFacts, *, explain: bool = False) -> Decision:
        """Decide ``facts`` on the calling thread. Never raises: an unexpected fault is an
        ``internal_error`` denial."""
        trail = _Trail(explain)
        now = self._clock()
        if facts.policy.mode is Mode.OFF:
            return self._allow(_Outcome(None, None), trail)
        try:
            decision = self._allow(self._run(facts, now, trail), trail)
        except Denial as denial:
            trail.failed(denial.detail or denial.reason.value)
            decision = self._deny(denial, facts, now, trail)
        except Exception:
            log.exception("unexpected fault while verifying; denying")
            trail.failed("unexpected fault")
            decision = self._deny(Denial(Reason.INTERNAL_ERROR), facts, now, trail)
        if facts.policy.mode is Mode.REPORT_ONLY and not decision.allow:
            return replace(decision, allow=True, enforced=False)
        return decision

    def _run(self, facts: RequestFacts, now: float, trail: _Trail) -> _Outcome:
        trail.begin("request")
        target = check_request(facts.method, facts.target_uri)
        trail.passed(f"{facts.method} {target}")
        if facts.proof_only:  # RFC 9449 §5: a token request carries a proof and no token
            with self._instrumentation.stage("proof"):
                proof = self._verified_proof(facts, now, trail, access_token=None)
            self._record(proof, trail)
            return _Outcome(proof, None)

        policy = facts.policy
        if policy.profile is Profile.FAPI2:
            trail.begin("fapi2.query")
            check_no_token_in_query(facts.target_uri)  # FAPI 2.0 §5.3.4, RFC 6750 §2.3
            trail.passed()

        trail.begin("authorization")
        credentials = parse_authorization(facts.authorization, self.settings.max_token_bytes)
        if credentials is None:
            raise Denial(Reason.AUTHORIZATION_MISSING)
        trail.passed(credentials.scheme.value)

        if credentials.scheme is Scheme.BEARER:
            return _Outcome(None, self._bearer(credentials.token, facts, now, trail))

        with self._instrumentation.stage("proof"):
            proof = self._verified_proof(facts, now, trail, access_token=credentials.token)
        trail.begin("token")
        claims = self._tokens.validate(credentials.token, now)
        check_route_token(claims, policy)
        trail.passed(claims.issuer)
        trail.begin("token.cnf.jkt")
        if not claims.jkt:
            raise Denial(Reason.TOKEN_NOT_BOUND)
        proofs.check_binding(claims.jkt, proof.jkt)
        if claims.dpop_algs and proof.alg not in claims.dpop_algs:  # the issuer's RFC 9449 §5.1
            raise Denial(Reason.PROOF_ALG_NOT_ALLOWED, "not supported by the token's issuer")
        trail.passed()
        if claims.x5t_s256:  # bound both ways: both must hold
            self._certificate_binding(claims, facts, trail)
        elif policy.sender_constraint is SenderConstraint.MTLS:
            raise Denial(Reason.TOKEN_NOT_CERTIFICATE_BOUND, "the token is DPoP-bound only")
        self._record(proof, trail)
        return _Outcome(proof, claims)

    def _bearer(self, token: str, facts: RequestFacts, now: float, trail: _Trail) -> TokenClaims:
        """The ``Bearer`` scheme: a DPoP-bound token never passes (RFC 9449 §7.2); a
        certificate-bound one passes with its certificate (RFC 8705 §3) where the route takes
        it; an unbound one where the route allows Bearer tokens or wants no sender constraint
        (never on a ``fapi2`` route)."""
        policy = facts.policy
        constraint = policy.sender_constraint
        allow_bearer = policy.mode is Mode.ALLOW_BEARER
        trail.begin("token")
        try:
            claims = self._tokens.validate(token, now)
        except Denial:
            if allow_bearer or constraint is not SenderConstraint.DPOP:
                raise
            raise Denial(Reason.BEARER_NOT_ALLOWED) from None
        check_route_token(claims, policy)
        trail.passed(claims.issuer)
        trail.begin("bearer")
        if claims.jkt:
            raise Denial(Reason.TOKEN_BOUND_SENT_AS_BEARER)
        if claims.x5t_s256:
            if constraint is SenderConstraint.DPOP and not allow_bearer:
                raise Denial(Reason.BEARER_NOT_ALLOWED, "the route requires DPoP")
            trail.passed("certificate-bound")
            self._certificate_binding(claims, facts, trail)
            return claims
        if policy.profile is Profile.FAPI2:  # FAPI 2.0 §5.3.4: sender-constrained tokens only
            if constraint is SenderConstraint.DPOP:
                raise Denial(Reason.BEARER_NOT_ALLOWED, "fapi2 profile")
            raise Denial(Reason.TOKEN_NOT_SENDER_CONSTRAINED, "fapi2 profile")
        if allow_bearer:
            trail.passed("route allows Bearer")
        elif constraint is SenderConstraint.NONE:
            trail.passed("route requires no sender constraint")
        elif constraint is SenderConstraint.DPOP:
            raise Denial(Reason.BEARER_NOT_ALLOWED)
        elif constraint is SenderConstraint.MTLS:
            raise Denial(Reason.TOKEN_NOT_CERTIFICATE_BOUND)
        else:
            raise Denial(Reason.TOKEN_NOT_SENDER_CONSTRAINED)
        return claims

    def _certificate_binding(self, claims: TokenClaims, facts: RequestFacts, trail: _Trail) -> None:
        """RFC 8705 §3: the token's ``cnf["x5t#S256"]`` names the client's certificate
        (exactly 32 bytes, compared in constant time)."""
        trail.begin("token.cnf.x5t#S256")
        facts_cert = facts.client_certificate
        if facts_cert is not None and facts_cert.problem is not None:
            raise Denial(facts_cert.problem, facts_cert.detail)
        certificate = None
        if facts_cert is not None and facts_cert.sha256:
            certificate = ClientCertificate(sha256=facts_cert.sha256, der=None)
        try:
            check_certificate_binding(claims.x5t_s256, certificate)
        except CertificateError as exc:
            raise Denial(Reason(exc.code), str(exc)) from None
        trail.passed()

    def _proof_key(self, header_b64: str, header: proofs.ProofHeader) -> _ProofKey:
        """Import the checked header's ``jwk`` for its ``alg``, with its thumbprint, and
        remember them for the next proof with this header."""
        try:
            key, jkt = public_key_for_alg(header.jwk, header.alg), thumbprint(header.jwk)
        except InvalidJwk as exc:
            raise Denial(Reason.PROOF_JWK_INVALID, str(exc)) from exc
        known = _ProofKey(header.alg, key, jkt)
        if len(header_b64) <= _MEMO_HEADER_CHARS:
            if len(self._proof_keys) >= self.settings.key_cache_size:
                self._proof_keys.clear()
            self._proof_keys[header_b64] = known
        return known

    def _verified_proof(
        self, facts: RequestFacts, now: float, trail: _Trail, access_token: str | None
    ) -> _VerifiedProof:
        fapi2 = facts.policy.profile is Profile.FAPI2
        limits = self._fapi2_limits if fapi2 else self.settings.limits
        trail.begin("proof.header_count")
        text = proofs.select_single_proof(facts.dpop, limits.max_proof_bytes)
        trail.passed()
        trail.begin("proof.syntax")
        header_b64, payload_b64, signature_b64 = proofs.split_proof(text)
        known = self._proof_keys.get(header_b64)
        if known is None:
            jws = proofs.parse_proof(text)
            payload, signature = jws.payload, jws.signature
            trail.passed()
            trail.begin("proof.header")
            header = proofs.check_header(jws.header, self._allowed_algs)
            trail.passed(header.alg)
            trail.begin("proof.jwk")
            known = self._proof_key(header_b64, header)
        else:  # this exact header passed the checks before: the same answer, without the work
            payload, signature = proofs.parse_proof_body(payload_b64, signature_b64)
            trail.passed()
            trail.begin("proof.header")
            trail.passed(known.alg)
            trail.begin("proof.jwk")
        if fapi2 and not _fapi2_proof_key(known):
            raise Denial(Reason.PROOF_ALG_NOT_ALLOWED, "not allowed by the fapi2 profile")
        self._instrumentation.proof_key(known.alg, known.jkt)
        trail.passed(f"jkt {known.jkt}")
        trail.begin("proof.signature")
        signing_input = text[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
        if not verify_signature(known.alg, known.key, signing_input, signature):
            raise Denial(Reason.PROOF_SIGNATURE_INVALID)
        trail.passed()
        trail.begin("proof.claims")
        claims = proofs.check_claims(
            payload, method=facts.method, target_uri=facts.target_uri, now=now, limits=limits
        )
        trail.passed(f"htm {claims.htm}, htu {claims.htu}")
        nonce_to_offer = ""
        keys = self.settings.nonce_keys
        if facts.policy.nonce_required:
            trail.begin("proof.nonce")
            if keys is None:  # refused at start-up; kept here so a bug fails closed
                raise Denial(Reason.INTERNAL_ERROR, "nonce required but no nonce secret")
            age = check_nonce(keys, claims.nonce, now)
            if should_refresh(keys, age):
                nonce_to_offer = issue_nonce(keys, now)
            trail.passed(f"age {age:.0f}s")
        if access_token is not None:
            trail.begin("proof.ath")
            proofs.check_ath(claims, access_token)
            trail.passed()
        return _VerifiedProof(known.alg, known.jkt, claims, nonce_to_offer)

    def _record(self, proof: _VerifiedProof, trail: _Trail) -> None:
        """RFC 9449 §11.1: accept each proof once; the write is atomic and comes last."""
        trail.begin("replay")
        key = proofs.replay_key(proof.jkt, proof.claims.htu, proof.claims.jti)
        try:
            first = self._replay.first_use(key, self._replay_ttl)
        except ReplayStoreUnavailable as exc:
            if not self.settings.replay_fail_open:
                raise Denial(Reason.REPLAY_STORE_UNAVAILABLE, str(exc)) from exc
            self._fail_open_alarm.fire(str(exc))
            trail.passed("store unavailable; fail-open")
            return
        if not first:
            raise Denial(Reason.REPLAYED)
        trail.passed()

    def _allow(self, outcome: _Outcome, trail: _Trail) -> Decision:
        proof, claims = outcome.proof, outcome.claims
        return allowed(
            dpop_nonce=proof.nonce_to_offer if proof else "",
            jkt=proof.jkt if proof else "",
            jti=proof.claims.jti if proof else "",
            alg=proof.alg if proof else "",
            claims=claims,
            checks=tuple(trail.checks),
        )

    def _deny(self, denial: Denial, facts: RequestFacts, now: float, trail: _Trail) -> Decision:
        reason = denial.reason
        info = CATALOGUE[reason]
        status = info.http_status
        challenge = ""
        if info.challenge:
            if facts.proof_only:
                # RFC 9449 §5, §8: a token endpoint answers 400 with the error in its JSON body.
                status = 400
            else:
                challenge = dpop_challenge(info.rfc_error, info.message, self.settings.proof_algs)
        nonce = ""
        keys = self.settings.nonce_keys
        if info.rfc_error is RfcError.USE_DPOP_NONCE and keys is not None:
            nonce = issue_nonce(keys, now)
        return denied(
            reason,
            denial.detail,
            http_status=status,
            www_authenticate=challenge,
            dpop_nonce=nonce,
            checks=tuple(trail.checks),
        )
