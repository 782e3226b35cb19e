"""The decision engine: :class:`~verifier.engine.pipeline.Verifier` runs the checks in the order
cheap -> expensive -> stateful and calls the ports (:mod:`verifier.domain.ports`) for all I/O."""
