"""``dpop-verifier issuer check``: what the verifier would accept from an authorization server.

It reads the issuer's metadata and key set exactly as the service does (the same discovery,
HTTP client and JWK Set parser), then prints what an ``issuers`` entry with these settings
would accept: the keys and the algorithms each may verify, the token profile (``typ``, ``iat``,
audience, client claim), the introspection endpoint and the proof algorithms the issuer
advertises. Given a sample token, it decides it with the service's own validator (a JWT is
verified against the fetched keys; an opaque token is only reported as going to
introspection). The token itself is never printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier.config import ConfigError, IssuerSettings, parse_issuer_entry
from verifier.domain.reasons import Denial
from verifier.jose.rfc7515 import MalformedJws, parse_compact
from verifier.tokens.claims import normalize_typ
from verifier.tokens.discovery import Fetcher, IssuerMetadataSource, MetadataUnavailable
from verifier.tokens.http import Fetched, IssuerHttp
from verifier.tokens.jwks import IssuerKey, parse_jwks
from verifier.tokens.presets import PRESETS
from verifier.tokens.sources import StaticKeySource
from verifier.tokens.validator import TokenValidator, TrustedIssuer


@dataclass
class KeyReport:
    """One published key and the access-token algorithms it may verify here."""

    kid: str | None
    kty: str
    alg: str | None
    crv: str | None
    use: str | None
    verifies: list[str]


@dataclass
class TokenReport:
    """The outcome for a sample token (never the token itself)."""

    format: str
    """``jwt`` or ``opaque``."""
    decision: str
    """``accepted``, ``denied`` or ``introspection`` (opaque: asked at the issuer)."""
    reason: str = ""
    detail: str = ""
    header: dict[str, Any] = field(default_factory=dict)
    """``typ``, ``alg`` and ``kid`` of a JWT."""
    claims: dict[str, Any] = field(default_factory=dict)
    """The identity claims of an accepted token."""


@dataclass
class IssuerReport:
    """What ``issuer check`` found; :attr:`problems` empty means the issuer is usable."""

    issuer: str
    preset: str
    metadata_url: str = ""
    jwks_uri: str = ""
    jwks_max_age: float | None = None
    introspection_endpoint: str = ""
    dpop_signing_alg_values_supported: list[str] | None = None
    keys: list[KeyReport] = field(default_factory=list)
    accepts: dict[str, Any] = field(default_factory=dict)
    preset_notes: dict[str, str] = field(default_factory=dict)
    token: TokenReport | None = None
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def _accepts(settings: IssuerSettings) -> dict[str, Any]:
    return {
        "typ": list(settings.jwt_typ),
        "iat_required": settings.require_iat,
        "audience": list(settings.audiences) if settings.audiences is not None else None,
        "client_id_claims": list(settings.client_id_claims),
        "token_algs": list(settings.algs),
        "opaque_tokens": settings.opaque_tokens,
        "introspect_jwts": settings.introspect_jwts,
    }


def _key_report(key: IssuerKey, algs: tuple[str, ...]) -> KeyReport:
    def text(name: str) -> str | None:
        value = key.jwk.get(name)
        return value if isinstance(value, str) else None

    return KeyReport(
        kid=key.kid,
        kty=str(key.jwk.get("kty")),
        alg=key.alg,
        crv=text("crv"),
        use=text("use"),
        verifies=[alg for alg in algs if key.usable_for(alg)],
    )


def _token_report(
    settings: IssuerSettings, keys: tuple[IssuerKey, ...], token: str, now: float
) -> TokenReport:
    try:
        jws = parse_compact(token)
    except MalformedJws:
        return TokenReport(format="opaque", decision="introspection")
    header = {name: jws.header.get(name) for name in ("typ", "alg", "kid")}
    trusted = TrustedIssuer(
        issuer=settings.issuer,
        source=StaticKeySource(keys),
        audience=settings.audiences,
        algs=frozenset(settings.algs),
        jwt_types=frozenset(normalize_typ(typ) for typ in settings.jwt_typ),
        require_iat=settings.require_iat,
        client_id_claims=settings.client_id_claims,
    )
    try:
        claims = TokenValidator([trusted]).validate(token, now)
    except Denial as denial:
        return TokenReport(
            "jwt", "denied", reason=denial.reason.value, detail=denial.detail, header=header
        )
    return TokenReport(
        "jwt",
        "accepted",
        reason="ok",
        header=header,
        claims={
            "sub": claims.subject,
            "client_id": claims.client_id,
            "scope": claims.scope,
            "exp": claims.expires_at,
            "cnf.jkt": claims.jkt,
        },
    )


def check_issuer(
    settings: IssuerSettings,
    *,
    token: str | None = None,
    fetch: Fetcher | None = None,
    now: float | None = None,
) -> IssuerReport:
    """Read ``settings.issuer``'s metadata and keys (blocking) and report what is accepted.

    ``fetch``: GET a JSON document (default: the service's HTTP client for the issuer)."""
    http = None
    if fetch is None:
        http = IssuerHttp(ca_file=settings.ca_file)
        fetch = http.get_json
    report = IssuerReport(issuer=settings.issuer, preset=settings.preset)
    report.accepts = _accepts(settings)
    if settings.preset:
        preset = PRESETS[settings.preset]
        report.preset_notes = {
            "typ": preset.typ,
            "aud": preset.aud,
            "cnf": preset.cnf,
            "iat": preset.iat,
            "client": preset.client,
            "introspection": preset.introspection,
            "metadata": preset.metadata,
        }
    try:
        keys = _read(settings, fetch, report)
        if token is not None:
            report.token = _token_report(settings, keys, token, time.time() if now is None else now)
    finally:
        if http is not None:
            http.close()
    return report


def _read(settings: IssuerSettings, fetch: Fetcher, report: IssuerReport) -> tuple[IssuerKey, ...]:
    jwks_uri = settings.jwks_uri
    if settings.discovers or not (settings.jwks_uri or settings.jwks_file):
        metadata = IssuerMetadataSource(settings.issuer, fetch, metadata_url=settings.metadata_url)
        try:
            found = metadata.current()
        except MetadataUnavailable:
            report.problems.append(
                f"metadata: none usable at {', '.join(metadata.urls)} ({metadata.last_error})"
            )
            return ()
        report.metadata_url = found.url
        report.introspection_endpoint = found.introspection_endpoint
        algs = found.dpop_algs
        report.dpop_signing_alg_values_supported = list(algs) if algs is not None else None
        jwks_uri = jwks_uri or found.jwks_uri
    report.introspection_endpoint = settings.introspection_endpoint or report.introspection_endpoint
    if settings.jwks_file:
        keys = StaticKeySource.from_file(settings.jwks_file).keys(None)
    elif not jwks_uri:
        report.problems.append("keys: the metadata names no jwks_uri (JWTs cannot be verified)")
        return ()
    else:
        report.jwks_uri = jwks_uri
        try:
            fetched: Fetched = fetch(jwks_uri)
            keys = parse_jwks(fetched.document)
        except Exception as exc:  # report, do not trace: this is a diagnostic tool
            report.problems.append(f"keys: {jwks_uri}: {type(exc).__name__}: {exc}"[:300])
            return ()
        report.jwks_max_age = fetched.max_age
    report.keys = [_key_report(key, settings.algs) for key in keys]
    if not any(key.verifies for key in report.keys):
        report.problems.append("keys: no published key can verify any of the allowed algs")
    if (settings.opaque_tokens or settings.introspect_jwts) and not report.introspection_endpoint:
        report.problems.append("introspection: no introspection_endpoint configured or published")
    return keys


def format_report(report: IssuerReport) -> str:
    """The report as text for a terminal."""
    lines = [f"issuer            {report.issuer}"]
    if report.preset:
        lines.append(f"preset            {report.preset} ({PRESETS[report.preset].title})")
    lines += [
        f"metadata          {report.metadata_url or '-'}",
        f"jwks_uri          {report.jwks_uri or '-'}"
        + (f"  (max-age {report.jwks_max_age:g} s)" if report.jwks_max_age is not None else ""),
        f"introspection     {report.introspection_endpoint or '-'}",
        "dpop proof algs   "
        + (
            " ".join(report.dpop_signing_alg_values_supported)
            if report.dpop_signing_alg_values_supported is not None
            else "(not advertised: the service-wide DPOP_PROOF_ALGS apply)"
        ),
        "",
        "keys",
    ]
    for key in report.keys:
        shown = " ".join(
            f"{name}={value}"
            for name, value in (("kty", key.kty), ("crv", key.crv), ("alg", key.alg))
            if value
        )
        verifies = " ".join(key.verifies) if key.verifies else "nothing allowed"
        lines.append(f"  kid={key.kid or '-'}  {shown}  verifies: {verifies}")
    if not report.keys:
        lines.append("  (none)")
    accepts = report.accepts
    audience = accepts["audience"]
    lines += [
        "",
        "accepted JWT access tokens",
        "  typ               " + " ".join(t or "(none)" for t in accepts["typ"]),
        "  iat               " + ("required" if accepts["iat_required"] else "optional"),
        "  aud               "
        + (" or ".join(audience) if audience else "NOT CHECKED (set audience)"),
        "  client            first of " + ", ".join(accepts["client_id_claims"]),
        "  algs              " + " ".join(accepts["token_algs"]),
        "  opaque tokens     "
        + ("introspected here" if accepts["opaque_tokens"] else "not taken by this issuer"),
    ]
    if report.preset_notes:
        lines += ["", f"what {report.preset} puts in its tokens (vendor documentation)"]
        lines += [f"  {name:<16}  {text}" for name, text in report.preset_notes.items()]
    if report.token is not None:
        token = report.token
        lines += ["", f"sample token ({token.format})"]
        if token.header:
            lines.append(
                "  header            " + " ".join(f"{k}={v}" for k, v in token.header.items())
            )
        if token.decision == "introspection":
            lines.append(
                f"  opaque: decided by introspection at {report.introspection_endpoint or '-'}"
            )
        elif token.decision == "accepted":
            lines.append("  ACCEPTED  " + " ".join(f"{k}={v}" for k, v in token.claims.items()))
        else:
            lines.append(
                f"  DENIED    {token.reason}" + (f" ({token.detail})" if token.detail else "")
            )
    lines += [""] + (
        [f"PROBLEM: {problem}" for problem in report.problems] or ["OK: the issuer is usable"]
    )
    return "\n".join(lines)


# --- the command line ----------------------------------------------------------------------


def _read_token(value: str) -> str:
    """``-``: stdin; ``@FILE``: the file; else the value itself (prefer the first two: a
    token on the command line is visible in the process list)."""
    if value == "-":
        return sys.stdin.read().strip()
    if value.startswith("@"):
        return Path(value[1:]).read_text(encoding="utf-8").strip()
    return value.strip()


def cmd_issuer_check(args: argparse.Namespace) -> int:
    entry: dict[str, Any] = {"issuer": args.issuer_url}
    for key, value in (
        ("preset", args.preset),
        ("audience", args.audience),
        ("jwt_typ", args.jwt_typ),
        ("client_id_claims", args.client_id_claim),
        ("algs", args.algs),
        ("metadata_url", args.metadata_url),
        ("jwks_uri", args.jwks_uri),
        ("ca_file", args.ca_file),
    ):
        if value:
            entry[key] = value
    if not (args.jwks_uri or args.metadata_url or "preset" in entry):
        entry["discovery"] = True
    if args.jwks_uri and args.preset:
        entry["discovery"] = False
    try:
        settings = parse_issuer_entry(entry)
        token = _read_token(args.token) if args.token else None
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read the token: {exc.strerror}", file=sys.stderr)
        return 2
    report = check_issuer(settings, token=token)
    print(report.as_json() if args.json else format_report(report))
    if report.problems:
        return 1
    return 1 if report.token is not None and report.token.decision == "denied" else 0


def add_issuer_commands(sub: Any) -> None:
    """``issuer check`` under the ``dpop-verifier`` command (``sub``: its subparsers)."""
    issuer = sub.add_parser("issuer", help="look at an authorization server as the service would")
    issuer_sub = issuer.add_subparsers(
        dest="issuer_command", required=True, metavar="ISSUER_COMMAND"
    )
    check = issuer_sub.add_parser(
        "check",
        help="fetch an issuer's metadata and keys and print what would be accepted",
        description="Read the issuer's metadata (RFC 8414, then OpenID Connect discovery) and "
        "its JWK Set as the service does, and print the keys, the token profile an issuers "
        "entry with these options accepts, and the issuer's introspection endpoint and DPoP "
        "algorithms. Exit 0: usable; 1: a problem (or --token denied); 2: bad options.",
    )
    check.add_argument("issuer_url", help="the issuer identifier (exactly as in iss)")
    check.add_argument("--preset", choices=sorted(PRESETS), help="start from this preset")
    check.add_argument(
        "--audience", action="append", help="an audience to require (repeat for several)"
    )
    check.add_argument(
        "--jwt-typ", action="append", help='an accepted typ header (repeat; "" for none)'
    )
    check.add_argument(
        "--client-id-claim", action="append", help="a claim naming the client (repeat; in order)"
    )
    check.add_argument("--algs", help="access-token algorithms allowed (comma list)")
    check.add_argument("--metadata-url", help="read the metadata from this URL only")
    check.add_argument("--jwks-uri", help="read the keys from this URL (no discovery)")
    check.add_argument("--ca-file", help="PEM CA bundle for the issuer's TLS certificate")
    check.add_argument(
        "--token", help="decide a sample access token: - (stdin), @FILE, or the token itself"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=cmd_issuer_check)
