"""Coverage-guided fuzzing of the verifier's parsers (atheris / libFuzzer).

:mod:`fuzz.harnesses` holds one harness per parser; :mod:`fuzz.target` runs one under atheris,
:mod:`fuzz.run` runs them all for a bounded time, and ``tests/fuzz`` replays the seed corpus
and every recorded crash through the same harness functions. See ``fuzz/README.md``.
"""
