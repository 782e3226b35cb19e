"""Developer helpers of the ``dpop-verifier`` command: key files, and a local test issuer.

``dev init`` writes a **development-only** issuer key, a client key and a config trusting that
issuer to ``.dpop-dev/``; ``dev serve`` serves that config and says what to try next (``make
run``); ``dev request`` mints a token and a proof with those keys and calls ``Verify``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from verifier.cli.mint import (
    KeyPair,
    generate_key,
    jwks_for,
    load_key,
    make_access_token,
    make_proof,
)
from verifier.jose.rfc7515 import ALGORITHMS

DEV_DIR = ".dpop-dev"
DEV_ISSUER = "https://issuer.dev.local"
DEV_AUDIENCE = "https://api.example.com"
DEFAULT_TARGET = "127.0.0.1:50051"
TRY_URL = "https://api.example.com/orders"

_PRIVATE_MEMBERS = {
    "EC": ("crv", "x", "y", "d"),
    "RSA": ("n", "e", "d", "p", "q", "dp", "dq", "qi"),
    "OKP": ("crv", "x", "d"),
}
_CURVES = {"EC": ("P-256", "P-384", "P-521"), "OKP": ("Ed25519", "Ed448")}


# --- key files ---------------------------------------------------------------------------------


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write a private key file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)


def read_key(path: str, *, hint: str = "") -> KeyPair:
    """The private JWK in ``path`` (as ``dpop-verifier keygen`` writes it), or exit with a
    message that says what is wrong with the file."""

    def fail(problem: str) -> SystemExit:
        return SystemExit(f"error: cannot read private JWK {path}: {problem}{hint}")

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(exc.strerror or type(exc).__name__) from None
    except (UnicodeDecodeError, ValueError):
        raise fail("not UTF-8 text") from None
    try:
        jwk = json.loads(text)
    except ValueError as exc:
        raise fail(f"not JSON ({exc})") from None
    if not isinstance(jwk, dict):
        raise fail("not a JWK (a JSON object)")
    problem = _private_jwk_problem(jwk)
    if problem:
        raise fail(problem)
    try:
        return load_key(jwk)
    except (ValueError, TypeError, KeyError) as exc:
        problem = str(exc) or type(exc).__name__
        raise fail(f"not a usable {jwk['kty']} private key ({problem})") from None


def _private_jwk_problem(jwk: dict[str, Any]) -> str:
    """What keeps ``jwk`` from being a signing key ``load_key`` understands; "" when nothing."""
    kty = jwk.get("kty")
    if kty not in _PRIVATE_MEMBERS:
        return f"kty must be one of {', '.join(_PRIVATE_MEMBERS)}, got {kty!r}"
    missing = [m for m in ("alg", *_PRIVATE_MEMBERS[kty]) if not isinstance(jwk.get(m), str)]
    if "d" in missing:
        return "it has no private part (member 'd'): a public key cannot sign"
    if missing:
        return f"member {missing[0]!r} is missing (dpop-verifier keygen writes complete keys)"
    if jwk["alg"] not in ALGORITHMS:
        return f"alg {jwk['alg']!r} is not one of {', '.join(ALGORITHMS)}"
    if kty in _CURVES and jwk["crv"] not in _CURVES[kty]:
        return f"crv {jwk['crv']!r} is not one of {', '.join(_CURVES[kty])}"
    return ""


# --- dev init / serve / request ---------------------------------------------------------------


def init(directory: Path) -> None:
    """Write a test issuer key, a client key, the issuer's JWKS and a config to ``directory``."""
    issuer, client = generate_key("ES256"), generate_key("ES256")
    write_private(directory / "issuer.jwk", issuer.private_jwk())
    write_private(directory / "client.jwk", client.private_jwk())
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


def _is_set_up(directory: Path) -> bool:
    return all((directory / name).exists() for name in ("issuer.jwk", "client.jwk", "config.json"))


def cmd_dev_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if _is_set_up(directory) and not args.force:
        print(f"{directory} already set up (use --force to start over)", file=sys.stderr)
        return 0
    init(directory)
    print(
        f"Local test issuer {DEV_ISSUER} (DEVELOPMENT ONLY) and a client key written to "
        f"{directory}/.\nStart the service with:  dpop-verifier serve --config "
        f"{directory}/config.json   (or: dpop-verifier dev serve)",
        file=sys.stderr,
    )
    return 0


def _program() -> str:
    """How the user ran this command, to show in hints (``.venv/bin/dpop-verifier``)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "dpop-verifier" and argv0.is_file():
        relative = os.path.relpath(argv0)
        return relative if not relative.startswith("..") else str(argv0)
    return "dpop-verifier"


def cmd_dev_serve(args: argparse.Namespace) -> int:
    """``dev init`` when needed, then ``serve --config <dir>/config.json`` in this process; once
    the service answers its health check, print what to try next."""
    from verifier.cli.main import cmd_serve
    from verifier.config import ConfigError, load_settings

    directory = Path(args.dir)
    if not _is_set_up(directory):
        init(directory)
        print(
            f"==> wrote a DEVELOPMENT-ONLY test issuer ({DEV_ISSUER}), a client key and a config "
            f"to {directory}/",
            file=sys.stderr,
        )
    config = str(directory / "config.json")
    listen = f" --listen {args.listen}" if args.listen else ""
    print(f"==> starting the service: serve --config {config}{listen} (Ctrl-C stops it)",
          file=sys.stderr, flush=True)  # fmt: skip
    serve = argparse.Namespace(
        config=config, listen=args.listen, replay_url=None, log_level=None, workers=None
    )
    stop = threading.Event()
    try:
        settings = load_settings({"config_file": config, "listen": args.listen})
    except ConfigError:
        settings = None  # cmd_serve reports it
    watcher = threading.Thread(
        target=_announce_when_ready, args=(settings, directory, stop), daemon=True
    )
    watcher.start()
    try:
        return cmd_serve(serve)
    finally:
        stop.set()
        watcher.join(timeout=5)


def _announce_when_ready(settings: Any, directory: Path, stop: threading.Event) -> None:
    """Print the next steps once the service at ``settings.listen`` answers SERVING (plaintext
    TCP only; otherwise at once, without waiting)."""
    if settings is None:
        return  # the configuration is refused: nothing will listen
    address = settings.listen
    port = address.rpartition(":")[2]
    if not port.isdigit() or int(port) == 0 or settings.tls_enabled:
        _print_next_steps("", directory)
        return
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            except grpc.RpcError:
                reply = None
            if reply is not None and reply.status == health_pb2.HealthCheckResponse.SERVING:
                _print_next_steps(address, directory)
                return
            stop.wait(0.2)


def _print_next_steps(address: str, directory: Path) -> None:
    target = "" if address in ("", DEFAULT_TARGET) else f" --target {address}"
    where = "" if str(directory) == DEV_DIR else f" --dir {directory}"
    program = _program()
    print(
        f"==> ready. In a second terminal, from this folder:\n"
        f"      {program} dev request --url {TRY_URL}{target}{where}\n"
        f"      {program} dev request --url {TRY_URL} --proof-url "
        f"https://api.example.com/admin --explain{target}{where}",
        file=sys.stderr,
        flush=True,
    )


def cmd_dev_request(args: argparse.Namespace) -> int:
    from verifier.cli.call import call_verify, print_response

    directory = Path(args.dir)
    if not _is_set_up(directory):
        raise SystemExit(
            f"error: no development keys in {directory}/ (--dir): run `dpop-verifier dev init` "
            "in this folder first (make run does it), or pass --dir"
        )
    if args.repeat_proof < 1:
        raise SystemExit("error: --repeat-proof must be at least 1")
    hint = " (run `dpop-verifier dev init --force` to make new keys)"
    issuer = read_key(str(directory / "issuer.jwk"), hint=hint)
    client = read_key(str(directory / "client.jwk"), hint=hint)
    token = make_access_token(
        issuer, issuer=DEV_ISSUER, jkt=client.jkt, audience=DEV_AUDIENCE, scope="read"
    )
    proof_method = args.proof_method or args.method
    proof_url = args.proof_url or args.url

    def send(proof: str) -> Any:
        response = call_verify(
            args.target,
            method=args.method,
            url=args.url,
            token=token,
            proofs=[proof],
            scheme=args.scheme,
            explain=args.explain,
            timeout=args.timeout,
        )
        print_response(response, as_json=args.json, explain_asked=args.explain)
        return response

    notes = sys.stderr if args.json else sys.stdout  # with --json, stdout holds JSON only
    proof = make_proof(client, proof_method, proof_url, access_token=token)
    response = send(proof)
    if response.reason_code.startswith("nonce_") and response.dpop_nonce:
        print("-- retrying with the server's DPoP-Nonce --", file=notes)
        nonce = response.dpop_nonce
        proof = make_proof(client, proof_method, proof_url, access_token=token, nonce=nonce)
        response = send(proof)
    for attempt in range(2, args.repeat_proof + 1):
        print(f"-- request {attempt} of {args.repeat_proof}: the same proof again --", file=notes)
        response = send(proof)
    return 0 if response.decision == 1 else 1
