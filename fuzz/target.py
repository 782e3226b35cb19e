"""Run one harness under atheris (libFuzzer).

    python -m fuzz.target NAME [libFuzzer flags] [corpus directories or input files]

With directories it fuzzes (new inputs go to the first one); with files it runs each once,
which is how a crash input is reproduced. ``-max_len`` defaults to the harness's. Inputs
that crash with the signature of a recorded crash (:mod:`fuzz.known`) are skipped; any other
exception ends the run, and libFuzzer saves the input (``-artifact_prefix``) and prints the
Python traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

from fuzz.known import known_crash


def _fuzz_target(name: str) -> tuple[Callable[[bytes], None], int]:
    # str.startswith/endswith comparisons guide the mutations. Not atheris's "RegEx" hook: its
    # pattern proxy drops the pos argument of Pattern.match() (atheris 3.0 and 3.1).
    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=["verifier", "fuzz"]):
        from fuzz.harnesses import harness

        chosen = harness(name)

    def one_input(data: bytes) -> None:
        try:
            chosen.run(data)
        except Exception as exc:
            if known_crash(chosen.name, exc) is None:
                raise

    return one_input, chosen.max_len


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1].startswith("-"):
        sys.exit(f"usage: python -m fuzz.target NAME [libFuzzer flags] [corpus...]\n{__doc__}")
    one_input, max_len = _fuzz_target(argv[1])
    flags = argv[2:]
    if not any(flag.startswith("-max_len=") for flag in flags):
        flags.append(f"-max_len={max_len}")
    atheris.Setup([argv[0], *flags], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
