"""What a fuzz harness is: entry points fed the same bytes, and the refusals they may raise."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

SCRATCH_ENV = "DPOP_FUZZ_SCRATCH"
"""Where a harness may create files (``fuzz.run`` sets it for each fuzzing process)."""


@dataclass(frozen=True, slots=True)
class Harness:
    """One fuzzed parser.

    Each of ``steps`` takes the raw input and drives the code under test with it; a step may
    raise one of ``outcomes``, the documented refusals of that code (a denial with its reason
    code, an invalid key, ...). Any other exception, a failed assertion included, is a
    finding: :meth:`run` lets it through, and the fuzzer reports the input as a crash.
    """

    name: str
    steps: tuple[Callable[[bytes], object], ...]
    outcomes: tuple[type[Exception], ...]
    max_len: int = 4096
    """The largest input libFuzzer generates (``-max_len``)."""

    def run(self, data: bytes) -> None:
        """Feed ``data`` to every step; raise only what is not a documented outcome."""
        for step in self.steps:
            with contextlib.suppress(*self.outcomes):
                step(data)


def text(data: bytes) -> str:
    """The input as the text a gRPC string field could carry: UTF-8, invalid bytes read as
    U+FFFD (a proto ``string`` never holds anything but valid UTF-8)."""
    return data.decode("utf-8", errors="replace")
