"""The composition root: the one place that turns :class:`~verifier.config.Settings` into a
running application (engine, ports and their adapters, telemetry, the front doors' options).
The server hosts what it builds; nothing else wires parts together."""

from verifier.app.build import App, build_app, engine_settings, issuer_parts

__all__ = ["App", "build_app", "engine_settings", "issuer_parts"]
