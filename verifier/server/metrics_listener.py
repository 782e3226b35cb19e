"""The Prometheus endpoint (``DPOP_METRICS_LISTEN``): ``GET /metrics`` in the text format,
served by prometheus_client's WSGI application on the same bounded listener as forward auth
(:class:`~verifier.server.http_listener.HttpListener`).

prometheus_client's own ``start_http_server`` runs a thread per connection with no deadline to
send a request, so a caller that opens connections and sends nothing would hold a thread each,
without limit. Here a silent or slow caller holds a connection slot (``DPOP_MAX_CONNECTIONS``)
for at most ``DPOP_RECEIVE_TIMEOUT_MS``, and two threads answer complete scrapes.
"""

from __future__ import annotations

import logging

from verifier.config.server import ServerSettings
from verifier.server.http_listener import HttpListener
from verifier.telemetry import Telemetry

METRICS_THREADS = 2
"""Threads answering scrapes: a scrape takes milliseconds, and Prometheus sends one at a time."""
GRACE_SECONDS = 2.0
"""How long a scrape in flight may finish when the service stops."""

_log = logging.getLogger(__name__)


def start_metrics_endpoint(telemetry: Telemetry, address: str, settings: ServerSettings) -> str:
    """Serve ``GET /metrics`` from ``telemetry``'s Prometheus registry on ``address``
    (host:port, port 0 picks one), with ``settings``' bounds; return the bound ``host:port``.
    Stopped by :meth:`Telemetry.shutdown`. Raises ``RuntimeError`` naming
    ``DPOP_METRICS_LISTEN`` when the address cannot be bound."""
    from prometheus_client import make_wsgi_app

    registry = telemetry.prometheus_registry
    if registry is None:
        raise RuntimeError("metrics endpoint requested but no Prometheus reader is configured")
    listener = HttpListener(
        make_wsgi_app(registry),
        settings,
        listen=address,
        threads=METRICS_THREADS,
        name="metrics",
        setting="DPOP_METRICS_LISTEN",
    )
    listener.start()
    telemetry.on_shutdown(lambda: listener.stop(GRACE_SECONDS))
    _log.info("serving Prometheus metrics on http://%s/metrics", listener.address)
    return listener.address
