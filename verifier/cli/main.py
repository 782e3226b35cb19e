"""The ``dpop-verifier`` command: run the service, and developer helpers to try it.

dpop-verifier serve                 run the gRPC service (configured by DPOP_* variables)
dpop-verifier dev init | serve      make a local test issuer, a client key and a config; serve it
dpop-verifier dev request ...       mint a token and a proof and ask the service
dpop-verifier keygen | jwks | token | proof | call    the same steps one by one
dpop-verifier explain ...           decide one token + proof in-process, print every check
dpop-verifier issuer check URL      fetch an issuer's metadata and keys, print what is accepted
dpop-verifier rollout [LOG]         per route, what report-only would deny (from the decision log)

Errors are one line on stderr naming the flag, variable or file at fault; never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import gzip
import json
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verifier.cli.dev import (
    DEV_DIR,
    cmd_dev_init,
    cmd_dev_request,
    cmd_dev_serve,
    read_key,
    write_private,
)
from verifier.cli.mint import generate_key, jwks_for, make_access_token, make_proof
from verifier.jose.rfc7515 import DEFAULT_PROOF_ALGS

if TYPE_CHECKING:
    from verifier.config import Settings

# verifier.config (and the Redis client it pulls in) is imported by the commands that read the
# service's settings only, so that keygen, token and proof start in a fraction of the time.

# --- serve -------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from verifier.config import ConfigError, load_settings
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
    taken = _taken_address(settings, overrides)
    if taken:
        print(taken, file=sys.stderr)
        return 1
    return run(settings, overrides)


def _taken_address(settings: Settings, overrides: Mapping[str, object]) -> str:
    """A message when an address to listen on is already taken (another ``serve``, perhaps
    ``make run``), naming where the address came from and how to pick another; "" when free.
    Workers and their supervisor check their ports themselves."""
    from verifier.config import OPTIONS, source_of
    from verifier.server.workers import WORKER_ENV

    if settings.workers > 1 or os.environ.get(WORKER_ENV):
        return ""
    listeners = [o.name for o in OPTIONS if o.name == "listen" or o.name.endswith("_listen")]
    for name in listeners:
        flag = "--listen" if name == "listen" else ""
        address = getattr(settings, name)
        if not _in_use(address):
            continue
        source = source_of(name, overrides, config_file=settings.config_file)
        host, _, port = address.rpartition(":")
        other = f"{host}:{int(port) + 1 if int(port) < 65535 else 0}"
        how = f"{flag} {other}" if flag else f"another {name.upper()} address"
        env = "DPOP_" + name.upper()
        return (
            f"error: cannot listen on {address} ({source}): the address is in use, perhaps by "
            f"another dpop-verifier (make run serves on 127.0.0.1:50051). Choose another: "
            f"{how} (or {env}={other})"
        )
    return ""


def _in_use(address: str) -> bool:
    """Whether binding the TCP ``address`` fails with "address in use" (port 0: never)."""
    host, _, port = address.rpartition(":")
    if not address or address.startswith("unix:") or not port.isdigit() or int(port) == 0:
        return False
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError:
        return False  # the server reports what it cannot resolve
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


# --- key, token and proof helpers -------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    key = generate_key(args.alg)
    if args.out:
        write_private(Path(args.out), key.private_jwk())
        print(f"wrote {args.out} (alg {key.alg}, jkt {key.jkt})", file=sys.stderr)
    else:
        print(json.dumps(key.private_jwk(), indent=2))
    return 0


def cmd_jwks(args: argparse.Namespace) -> int:
    print(json.dumps(jwks_for(read_key(args.key)), indent=2))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    jkt = args.jkt
    if args.client_key:
        jkt = read_key(args.client_key).jkt
    token = make_access_token(
        read_key(args.issuer_key),
        issuer=args.issuer,
        subject=args.sub,
        client_id=args.client_id,
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
        make_proof(read_key(args.key), args.method, args.url, access_token=token, nonce=args.nonce)
    )
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from verifier.cli.call import call_verify, print_response

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
    print_response(response, as_json=args.json, explain_asked=args.explain)
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
    from verifier.cli.explain import explain, explain_request_facts, print_explanation
    from verifier.config import ConfigError, load_settings

    try:
        settings = load_settings({"config_file": args.config})
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    token = _credential(args.token, "the token")
    proofs = [p for p in (_credential(v, "the proof") for v in args.proof or []) if p]
    facts = explain_request_facts(
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


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog may be computed when help is shown (``epilog_factory``)."""

    def __init__(self, *args: Any, epilog_factory: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self._epilog_factory is not None:
            self.epilog = self._epilog_factory()
        return super().format_help()


def _settings_help() -> str:
    from verifier.config import OPTIONS

    rows = "\n".join(f"  {o.env:<34} {o.help} (default: {o.default})" for o in OPTIONS)
    return "Environment variables:\n" + rows


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dpop-verifier",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A gRPC service that verifies OAuth 2.0 DPoP proofs (RFC 9449) and "
        "DPoP-bound access tokens for sidecars, gateways and services.",
        epilog="Try it in two minutes:\n"
        "  dpop-verifier dev serve        # dev init, then serve .dpop-dev/config.json\n"
        "  dpop-verifier dev request --url https://api.example.com/orders   # a 2nd terminal\n",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    serve = sub.add_parser(
        "serve",
        help="run the gRPC service",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the service. Settings come from (highest first) these flags, DPOP_* "
        "environment variables, the config file, defaults.",
        epilog_factory=_settings_help,
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
    token.add_argument("--client-id", default="dev-client", help="the client_id claim")
    token.add_argument("--aud", default=None, help="the aud claim (an issuer's audience)")
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
    dev_serve = dev_sub.add_parser(
        "serve",
        help=f"dev init if needed, then serve {DEV_DIR}/config.json (what make run does)",
    )
    dev_serve.add_argument("--dir", default=DEV_DIR)
    dev_serve.add_argument(
        "--listen", help="host:port of the gRPC listener (default 127.0.0.1:50051)"
    )
    dev_serve.set_defaults(func=cmd_dev_serve)
    request = dev_sub.add_parser(
        "request", help="mint a token and proof from the dev keys and call Verify"
    )
    add_call_options(request)
    request.add_argument("--dir", default=DEV_DIR)
    request.add_argument("--proof-url", help="sign this htu instead of --url (to see a denial)")
    request.add_argument("--proof-method", help="sign this htm instead of --method")
    request.add_argument(
        "--repeat-proof",
        type=int,
        default=1,
        metavar="N",
        help="send the same proof in N separate requests: the 2nd and later are replays "
        "(replayed); the exit status is the last answer's",
    )
    request.set_defaults(func=cmd_dev_request)

    from verifier.cli.issuer_check import add_issuer_commands  # imports the config module

    add_issuer_commands(sub)
    rollout = sub.add_parser(
        "rollout",
        help="per route, what report-only would refuse (or enforcing routes refused), by "
        "reason and client, from the decision log",
        description="Read decision-log lines (JSON, as the service writes them to stderr; "
        "other lines are skipped) from files or stdin and print, per route, the share of "
        "requests refused or, on report-only routes, that would be refused, by reason, and the "
        "clients (client_id and hashed key thumbprint) behind them. Use it to decide when a "
        "route can move from report-only to require.",
        epilog="Example: kubectl logs -n dpop -l app.kubernetes.io/name=dpop-verifier "
        "--since=24h | dpop-verifier rollout",
    )
    rollout.add_argument("logs", nargs="*", help="decision log files (.gz too); default: stdin")
    rollout.add_argument("--route", action="append", default=[], help="only this route (repeat)")
    rollout.add_argument("--top", type=int, default=10, help="clients listed per route (10)")
    rollout.add_argument("--json", action="store_true", help="print the report as JSON")
    rollout.set_defaults(func=cmd_rollout)
    return parser


def cmd_rollout(args: argparse.Namespace) -> int:
    from verifier.cli.rollout import format_text, summarize

    if args.top < 0:
        raise SystemExit("error: --top must be 0 or more")
    report = summarize(_log_lines(args.logs), routes=args.route)
    if args.json:
        print(json.dumps(report.to_json(top=args.top), indent=2))
    else:
        print(format_text(report, top=args.top))
    return 0 if report.decisions else 1


def _log_lines(paths: list[str]) -> Iterator[str]:
    """The lines of each file (gzip when it ends in .gz), or of stdin; undecodable bytes are
    replaced, so one bad line cannot stop the report."""
    if not paths or paths == ["-"]:
        sys.stdin.reconfigure(errors="replace")  # type: ignore[union-attr]
        yield from sys.stdin
        return
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                yield from handle
        except (OSError, EOFError) as exc:
            problem = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise SystemExit(f"error: cannot read the decision log {path}: {problem}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dpop-verifier`` command.

    A closed stdout (``| head``) ends the command quietly; Ctrl-C ends it with 130; anything
    unexpected is one line on stderr, never a traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        return 141  # as if killed by SIGPIPE, which is what a shell reports for `cmd | head`
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except OSError as exc:  # a file named on the command line, most likely
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 1
    except Exception as exc:  # the one place a user must not see a traceback
        detail = str(exc) or "no details"
        print(f"error: unexpected {type(exc).__name__}: {detail}", file=sys.stderr)
        return 70  # EX_SOFTWARE
    return result


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
