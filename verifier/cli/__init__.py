"""The ``dpop-verifier`` command line: ``serve`` and the tools around it (``keygen``, ``token``,
``proof``, ``call``, ``explain``, ``issuer check``, ``rollout``, ``dev``)."""

from verifier.cli.main import main

__all__ = ["main"]
