"""Every seed and every recorded crash input, through the harness functions the fuzzers run.

Seeds must be handled (a documented outcome at most). A crash input listed in
``fuzz/known.py`` is a bug not fixed yet: it must still raise its exception (strict xfail, so
the fix is noticed); every other crash input is a fixed bug and must pass.
"""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

from fuzz.harnesses import NAMES, harness
from fuzz.known import CRASHES, KNOWN, recorded, signature

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"


def _inputs(root: Path) -> list[Path]:
    return sorted(path for name in NAMES for path in (root / name).glob("*") if path.is_file())


def _crash_case(path: Path) -> object:
    case_id = path.relative_to(CRASHES).as_posix()
    crash = recorded(path)
    if crash is None:
        return pytest.param(path, id=case_id)
    raises = getattr(builtins, crash.exception)
    mark = pytest.mark.xfail(strict=True, raises=raises, reason=f"{crash.where}: {crash.reason}")
    return pytest.param(path, id=case_id, marks=mark)


@pytest.mark.parametrize("path", _inputs(CORPUS), ids=lambda p: p.relative_to(CORPUS).as_posix())
def test_seed_is_handled(path: Path) -> None:
    harness(path.parent.name).run(path.read_bytes())


@pytest.mark.parametrize("path", [_crash_case(path) for path in _inputs(CRASHES)])
def test_crash_input_is_handled(path: Path) -> None:
    crash = recorded(path)
    try:
        harness(path.parent.name).run(path.read_bytes())
    except Exception as exc:
        # A recorded crash must still fail where it was recorded: the fuzzers skip inputs by
        # that signature, so a stale one would hide a new bug.
        if crash is not None and signature(exc) != (crash.exception, crash.where):
            pytest.fail(f"{path} now fails as {signature(exc)}, recorded as {crash}")
        raise


def test_every_seed_corpus_has_seeds() -> None:
    assert all(any((CORPUS / name).iterdir()) for name in NAMES)


def test_every_known_crash_has_its_input() -> None:
    assert [crash.input for crash in KNOWN if not (CRASHES / crash.input).is_file()] == []
