"""Process entry point of ``dpop-verifier serve``: logging, wiring, the event loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
from collections.abc import Mapping

from verifier.app import App, build_app
from verifier.app.telemetry import build_telemetry, start_metrics_endpoint
from verifier.config import ConfigError, Settings
from verifier.config.telemetry import telemetry_settings
from verifier.server.runtime import ListeningAddresses, exit_process, serve
from verifier.server.workers import (
    METRICS_TAKEOVER_SECONDS,
    become_worker,
    current_worker,
    start_worker_metrics,
    supervise,
)
from verifier.telemetry import Telemetry
from verifier.telemetry.logs import configure_logging
from verifier.tokens.jwks import InvalidJwks

log = logging.getLogger("verifier")


def _announce(addresses: ListeningAddresses) -> None:
    # Machine-readable lines on stdout: scripts and tests read the bound ports from them. The
    # main one comes last: whoever waits for it has seen the others.
    if addresses.http:
        print(f"dpop-verifier forward-auth listening on {addresses.http}", flush=True)
    print(f"dpop-verifier listening on {addresses.main}", flush=True)


async def _serve(app: App, telemetry: Telemetry, *, reuse_port: bool = False) -> int:
    await app.start()
    # Everything built so far (modules, stubs, keys, settings) lives as long as the process:
    # keep it out of the cyclic collector's full passes, which otherwise rescan it all and show
    # up as multi-millisecond pauses in the latency tail (bench/run.py, paced row). Done once,
    # here at process start-up, not in serve(), which tests call many times in one process.
    gc.collect()
    gc.freeze()
    try:
        return await serve(
            app.settings,
            app.engine,
            app.replay,
            on_listening=_announce,
            telemetry=telemetry,
            issuer_health=app.issuer_health,
            reuse_port=reuse_port,
        )
    finally:
        await app.close()


def run(settings: Settings, overrides: Mapping[str, object] | None = None) -> int:
    """Build the service from ``settings`` and serve until SIGTERM/SIGINT. Returns an exit code.

    With ``settings.workers`` > 1 this process supervises that many server processes instead
    (``verifier.server.workers``); ``overrides`` are the command-line settings they inherit.
    """
    configure_logging(settings.log_level, settings.log_format, decision_log=settings.decision_log)
    worker = current_worker()
    if worker is None and settings.workers > 1:
        return supervise(settings, overrides)
    if worker is not None:
        become_worker(worker)
    stuck = 0
    try:
        telemetry = build_telemetry(settings, telemetry_settings())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            app = build_app(settings, telemetry)
        except (InvalidJwks, OSError, ValueError) as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
        try:
            if settings.metrics_listen and worker is not None:
                start_worker_metrics(
                    functools.partial(start_metrics_endpoint, telemetry),
                    settings.metrics_listen,
                    wait_seconds=settings.shutdown_grace_seconds + METRICS_TAKEOVER_SECONDS,
                )
            elif settings.metrics_listen:
                start_metrics_endpoint(telemetry, settings.metrics_listen)
            stuck = asyncio.run(_serve(app, telemetry, reuse_port=worker is not None))
        except RuntimeError as exc:  # e.g. the address is in use
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        telemetry.shutdown()
        if stuck:  # worker threads the interpreter would wait for at exit
            exit_process(0, stuck)
