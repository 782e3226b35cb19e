"""Process entry point of ``dpop-verifier serve``: logging, wiring, the event loop."""

from __future__ import annotations

import asyncio
import logging
import sys

from verifier.app import App, build_app
from verifier.config import Settings
from verifier.server.runtime import ListeningAddresses, serve
from verifier.tokens.jwks import InvalidJwks

log = logging.getLogger("verifier")


def _announce(addresses: ListeningAddresses) -> None:
    # One machine-readable line on stdout: scripts and tests read the bound port from it.
    print(f"dpop-verifier listening on {addresses.main}", flush=True)


async def _serve(app: App) -> None:
    await app.start()
    try:
        await serve(app.settings, app.engine, app.replay, on_listening=_announce)
    finally:
        await app.close()


def run(settings: Settings) -> int:
    """Build the service from ``settings`` and serve until SIGTERM/SIGINT. Returns an exit code."""
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        app = build_app(settings)
    except (InvalidJwks, OSError, ValueError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(app))
    except RuntimeError as exc:  # e.g. the address is in use
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
