"""Every fuzz harness, by name: one module per parser, each defining ``HARNESS``.

Modules are imported on demand, so that a fuzzing process imports (and instruments) only the
code its harness drives.
"""

from __future__ import annotations

import importlib

from fuzz.harness import Harness

NAMES = (
    "proof", "jwk", "token", "htu", "authorization", "nonce", "extauthz", "forwardauth", "config",
)  # fmt: skip


def harness(name: str) -> Harness:
    """The harness called ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise KeyError(f"no harness {name!r}; known: {', '.join(NAMES)}")
    found: Harness = importlib.import_module(f"fuzz.harnesses.{name}").HARNESS
    assert found.name == name
    return found
