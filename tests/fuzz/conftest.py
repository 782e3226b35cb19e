"""The ``fuzz`` marker, and the fuzzers' coverage table at the end of the run."""

from __future__ import annotations

import pytest

from fuzz.run import Result, summary

RESULTS = pytest.StashKey[list[Result]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fuzz: runs the atheris fuzzers (about 2 minutes); -m 'not fuzz' skips them"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    results = terminalreporter.config.stash.get(RESULTS, None)
    if results:
        terminalreporter.section("fuzzers: runs, coverage from the seeds to the end, corpus")
        for result in results:
            terminalreporter.write_line(summary(result))
