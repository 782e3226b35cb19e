"""CI's fuzzing: every harness under atheris for a bounded time, two at a time, fixed seed.

Each harness fails its test when the fuzzer found an input that raises anything but the
harness's documented outcomes (or hangs, or exhausts memory): the failure shows the input's
path, its base64 and the traceback. ``DPOP_FUZZ_SECONDS`` sets the time per harness (default
20; the whole run then takes about 1.5 minutes on two cores); ``-m 'not fuzz'`` leaves it out.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz.harnesses import NAMES
from fuzz.run import DEFAULT_JOBS, DEFAULT_SEED, Result, report, run_all
from tests.fuzz.conftest import RESULTS

pytestmark = pytest.mark.fuzz

SECONDS = float(os.environ.get("DPOP_FUZZ_SECONDS", "20"))
ATHERIS_WHEELS = {(3, 11), (3, 12), (3, 13)}
"""CPython versions for which PyPI has atheris wheels (3.0.0 for 3.11; 3.1.0 for 3.12, 3.13).
Elsewhere atheris builds from source, which needs clang's libFuzzer."""


def _require_atheris() -> None:
    if importlib.util.find_spec("atheris") is not None:
        return
    version = sys.version_info[:2]
    where = f"{sys.executable} (Python {version[0]}.{version[1]})"
    if version in ATHERIS_WHEELS:
        pytest.fail(
            f"atheris is not installed for {where}, which has a wheel: install the dev extra "
            "(make install-dev, or pip install -e '.[dev]')",
            pytrace=False,
        )
    pytest.skip(f"no atheris wheel for {where}: the fuzzers cannot run here")


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Result]]:
    _require_atheris()
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    found = run_all(NAMES, seconds=SECONDS, seed=DEFAULT_SEED, jobs=DEFAULT_JOBS, workdir=workdir)
    request.config.stash[RESULTS] = found
    yield {result.name: result for result in found}


@pytest.mark.timeout(10 * SECONDS + 300)
@pytest.mark.parametrize("name", NAMES)
def test_fuzzer_finds_no_crash(results: dict[str, Result], name: str) -> None:
    result = results[name]
    assert result.ok, report(result)
    assert result.final.runs > 0, report(result)
