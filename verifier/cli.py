"""The ``dpop-verifier`` command: run the service, and developer helpers to try it.

dpop-verifier serve                 run the gRPC service (configured by DPOP_* variables)
dpop-verifier dev init              make a local test issuer, a client key and a config
dpop-verifier dev request ...       mint a token and a proof and ask the service
dpop-verifier keygen | jwks | token | proof | call    the same steps one by one
dpop-verifier explain ...           decide one token + proof in-process, print every check
dpop-verifier issuer check URL      fetch an issuer's metadata and keys, print what is accepted
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from verifier.config import OPTIONS, ConfigError, load_settings
from verifier.dpop.jose import DEFAULT_PROOF_ALGS
from verifier.issuer_check import add_issuer_commands
from verifier.mint import (
    KeyPair,
    generate_key,
    jwks_for,
    load_key,
    make_access_token,
    make_proof,
)

DEV_DIR = ".dpop-dev"
DEV_ISSUER = "https://issuer.dev.local"
DEV_AUDIENCE = "https://api.example.com"


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write a private key file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)


def _read_key(path: str) -> KeyPair:
    try:
        return load_key(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"error: cannot read private JWK {path}: {exc}") from None


# --- serve -------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from verifier.server.main import run

    if args.replay_url and _has_password(args.replay_url):
        print(
            "configuration error: --replay-url carries a password, which every user of this "
            "machine can read in the process list; remove it from the URL and give it in "
            "DPOP_REDIS_PASSWORD_FILE (or DPOP_REDIS_PASSWORD)",
            file=sys.stderr,
        )
        return 2
    overrides = {
        "config_file": args.config,
        "listen": args.listen,
        "replay_url": args.replay_url,
        "log_level": args.log_level,
        "workers": args.workers,
    }
    try:
        settings = load_settings(overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return run(settings, overrides)


# --- key, token and proof helpers -------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    key = generate_key(args.alg)
    if args.out:
        _write_private(Path(args.out), key.private_jwk())
        print(f"wrote {args.out} (alg {key.alg}, jkt {key.jkt})", file=sys.stderr)
    else:
        print(json.dumps(key.private_jwk(), indent=2))
    return 0


def cmd_jwks(args: argparse.Namespace) -> int:
    print(json.dumps(jwks_for(_read_key(args.key)), indent=2))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    jkt = args.jkt
    if args.client_key:
        jkt = _read_key(args.client_key).jkt
    token = make_access_token(
        _read_key(args.issuer_key),
        issuer=args.issuer,
        subject=args.sub,
        jkt=jkt,
        audience=args.aud,
        scope=args.scope,
        lifetime=args.lifetime,
    )
    print(token)
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    token = _credential(args.token, "the token")
    print(
        make_proof(_read_key(args.key), args.method, args.url, access_token=token, nonce=args.nonce)
    )
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from verifier.cli_call import call_verify, print_response

    response = call_verify(
        args.target,
        method=args.method,
        url=args.url,
        token=_credential(args.token, "the token"),
        proofs=[p for p in (_credential(v, "the proof") for v in args.proof or []) if p],
        scheme=args.scheme,
        proof_only=args.proof_only,
        explain=args.explain,
        timeout=args.timeout,
    )
    print_response(response, as_json=args.json)
    return 0 if response.decision == 1 else 1


def _has_password(url: str) -> bool:
    """True when ``url``'s userinfo holds a password (``scheme://[user]:password@...``)."""
    _scheme, separator, rest = url.partition("://")
    userinfo, at, _ = rest.partition("@")
    return bool(separator and at and "/" not in userinfo and ":" in userinfo)


def _credential(value: str | None, what: str) -> str | None:
    """A token or proof given as text, ``@file`` or ``-`` (stdin), so it need not appear in
    the shell history or the process list."""
    if value is None:
        return None
    if value == "-":
        return sys.stdin.readline().strip()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SystemExit(
                f"error: cannot read {what} from {value[1:]}: {exc.strerror}"
            ) from None
    return value.strip()


def cmd_explain(args: argparse.Namespace) -> int:
    from verifier.explain import explain, print_explanation, request_facts

    try:
        settings = load_settings({"config_file": args.config})
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    token = _credential(args.token, "the token")
    proofs = [p for p in (_credential(v, "the proof") for v in args.proof or []) if p]
    facts = request_facts(
        settings,
        method=args.method,
        url=args.url,
        token=token,
        proofs=proofs,
        scheme=args.scheme,
        proof_only=args.proof_only,
    )
    try:
        decision = explain(settings, facts, at=args.at)
    except (OSError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    print_explanation(decision, sys.stdout, facts=facts, as_json=args.json)
    return 0 if decision.allow else 1


# --- dev ---------------------------------------------------------------------------------------


def cmd_dev_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    issuer_file, client_file = directory / "issuer.jwk", directory / "client.jwk"
    if issuer_file.exists() and client_file.exists() and not args.force:
        print(f"{directory} already set up (use --force to start over)", file=sys.stderr)
        return 0
    issuer, client = generate_key("ES256"), generate_key("ES256")
    _write_private(issuer_file, issuer.private_jwk())
    _write_private(client_file, client.private_jwk())
    (directory / "jwks.json").write_text(json.dumps(jwks_for(issuer), indent=2), encoding="utf-8")
    config = {
        "issuers": [
            {
                "issuer": DEV_ISSUER,
                "audience": DEV_AUDIENCE,
                "jwks_file": str((directory / "jwks.json").resolve()),
            }
        ],
        "allow_explain": True,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    print(
        f"Local test issuer {DEV_ISSUER} (DEVELOPMENT ONLY) and a client key written to "
        f"{directory}/.\nStart the service with:  dpop-verifier serve --config "
        f"{directory}/config.json",
        file=sys.stderr,
    )
    return 0


def cmd_dev_request(args: argparse.Namespace) -> int:
    from verifier.cli_call import call_verify, print_response

    directory = Path(args.dir)
    issuer = _read_key(str(directory / "issuer.jwk"))
    client = _read_key(str(directory / "client.jwk"))
    token = make_access_token(
        issuer, issuer=DEV_ISSUER, jkt=client.jkt, audience=DEV_AUDIENCE, scope="read"
    )
    proof_url = args.proof_url or args.url
    proof = make_proof(client, args.proof_method or args.method, proof_url, access_token=token)
    proofs = [proof] * args.repeat_proof
    for attempt in range(2):
        response = call_verify(
            args.target,
            method=args.method,
            url=args.url,
            token=token,
            proofs=proofs,
            scheme=args.scheme,
            explain=args.explain,
            timeout=args.timeout,
        )
        print_response(response, as_json=args.json)
        if response.reason_code.startswith("nonce_") and response.dpop_nonce and attempt == 0:
            print("-- retrying with the server's DPoP-Nonce --", file=sys.stderr)
            proofs = [
                make_proof(
                    client, args.method, proof_url, access_token=token, nonce=response.dpop_nonce
                )
            ]
            continue
        break
    return 0 if response.decision == 1 else 1


def build_parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {o.env:<34} {o.help} (default: {o.default})" for o in OPTIONS)
    parser = argparse.ArgumentParser(
        prog="dpop-verifier",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A gRPC service that verifies OAuth 2.0 DPoP proofs (RFC 9449) and "
        "DPoP-bound access tokens for sidecars, gateways and services.",
        epilog="Try it in two minutes:\n"
        "  dpop-verifier dev init\n"
        "  dpop-verifier serve --config .dpop-dev/config.json &\n"
        "  dpop-verifier dev request --url https://api.example.com/orders\n",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the gRPC service",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the service. Settings come from (highest first) these flags, DPOP_* "
        "environment variables, the config file, defaults.",
        epilog="Environment variables:\n" + env_help,
    )
    serve.add_argument("--config", help="config file (TOML or JSON); env DPOP_CONFIG_FILE")
    serve.add_argument("--listen", help="host:port of the gRPC listener; env DPOP_LISTEN")
    serve.add_argument("--replay-url", help="memory:// or redis://...; env DPOP_REPLAY_URL")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR; env DPOP_LOG_LEVEL")
    serve.add_argument(
        "--workers",
        help="server processes sharing the port (SO_REUSEPORT), supervised; env DPOP_WORKERS",
    )
    serve.set_defaults(func=cmd_serve)

    keygen = sub.add_parser("keygen", help="generate a private JWK (client or test issuer key)")
    keygen.add_argument("--alg", default="ES256", choices=[*DEFAULT_PROOF_ALGS, "Ed448"])
    keygen.add_argument("--out", help="file to write (mode 0600); default: print")
    keygen.set_defaults(func=cmd_keygen)

    jwks = sub.add_parser("jwks", help="print the public JWK Set of a private JWK file")
    jwks.add_argument("key", help="private JWK file")
    jwks.set_defaults(func=cmd_jwks)

    token = sub.add_parser("token", help="mint a test access token (RFC 9068 JWT)")
    token.add_argument("--issuer-key", required=True, help="the test issuer's private JWK file")
    token.add_argument("--issuer", required=True, help="the iss claim")
    bind = token.add_mutually_exclusive_group()
    bind.add_argument("--client-key", help="bind to this client key's thumbprint (cnf.jkt)")
    bind.add_argument("--jkt", help="bind to this thumbprint (cnf.jkt)")
    token.add_argument("--sub", default="alice")
    token.add_argument("--aud", default=None)
    token.add_argument("--scope", default="")
    token.add_argument("--lifetime", type=float, default=300.0, help="seconds (default 300)")
    token.set_defaults(func=cmd_token)

    proof = sub.add_parser("proof", help="mint a DPoP proof for one request")
    proof.add_argument("--key", required=True, help="the client's private JWK file")
    proof.add_argument("--method", required=True)
    proof.add_argument("--url", required=True)
    proof.add_argument("--token", help="access token, to add its ath (text, @file or -)")
    proof.add_argument("--nonce", help="server nonce to include")
    proof.set_defaults(func=cmd_proof)

    def add_call_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", default="127.0.0.1:50051", help="service address")
        p.add_argument("--method", default="GET")
        p.add_argument("--url", required=True, help="the request's target URI")
        p.add_argument("--scheme", default="DPoP", help="Authorization scheme (DPoP or Bearer)")
        p.add_argument("--explain", action="store_true", help="ask for the check-by-check table")
        p.add_argument("--json", action="store_true", help="print the response as JSON")
        p.add_argument("--timeout", type=float, default=5.0)

    call = sub.add_parser("call", help="call Verify with a token and proof, print the decision")
    add_call_options(call)
    call.add_argument("--token", help="access token (text, @file or -)")
    call.add_argument(
        "--proof", action="append", help="DPoP proof (text, @file or -; repeat for several)"
    )
    call.add_argument("--proof-only", action="store_true", help="token-endpoint mode")
    call.set_defaults(func=cmd_call)

    explain = sub.add_parser(
        "explain",
        help="run the engine here on a token and proof and print every check (no server)",
        description="Decide one request in this process with the service's configuration "
        "(DPOP_* variables and --config) and print the check-by-check table. The replay check "
        "uses a fresh in-memory store: the configured store is never written. TOKEN and PROOF "
        "may be given as text, @FILE or - (stdin).",
    )
    explain.add_argument("--config", help="config file (TOML or JSON); env DPOP_CONFIG_FILE")
    explain.add_argument("--token", help="access token (text, @file or -)")
    explain.add_argument("--proof", action="append", help="DPoP proof (text, @file or -)")
    explain.add_argument("--method", default="GET")
    explain.add_argument("--url", required=True, help="the request's target URI")
    explain.add_argument("--scheme", default="DPoP", help="Authorization scheme (DPoP or Bearer)")
    explain.add_argument("--proof-only", action="store_true", help="token-endpoint mode")
    explain.add_argument(
        "--at",
        type=float,
        help="decide as at this time (seconds since the epoch), e.g. the time of a logged request",
    )
    explain.add_argument("--json", action="store_true", help="print the result as JSON")
    explain.set_defaults(func=cmd_explain)

    dev = sub.add_parser("dev", help="local test issuer for trying the service")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    init = dev_sub.add_parser("init", help=f"create {DEV_DIR}/ with keys and a config")
    init.add_argument("--dir", default=DEV_DIR)
    init.add_argument("--force", action="store_true")
    init.set_defaults(func=cmd_dev_init)
    request = dev_sub.add_parser(
        "request", help="mint a token and proof from the dev keys and call Verify"
    )
    add_call_options(request)
    request.add_argument("--dir", default=DEV_DIR)
    request.add_argument("--proof-url", help="sign this htu instead of --url (to see a denial)")
    request.add_argument("--proof-method", help="sign this htm instead of --method")
    request.add_argument("--repeat-proof", type=int, default=1, help="send the proof N times")
    request.set_defaults(func=cmd_dev_request)

    add_issuer_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dpop-verifier`` command."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
