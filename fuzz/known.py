"""Crashes the fuzzers found that are recorded but not fixed yet.

Each entry names its input under ``fuzz/crashes/`` and the crash's signature: the exception
type and the innermost frame in our code (``verifier/config/__init__.py:_check_address``). The
replay test expects the input to crash (``xfail(strict=True)``), and the fuzzers skip inputs
that crash with a known signature, so that one recorded bug does not end every run. Once the
owner fixes the code, the replay passes, the strict xfail fails, and the entry is deleted (the
input stays, as a regression test).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRASHES = ROOT / "fuzz" / "crashes"
_OWN_CODE = (ROOT / "verifier", ROOT / "fuzz")


@dataclass(frozen=True, slots=True)
class KnownCrash:
    """One recorded, unfixed crash."""

    input: str
    """The input's path under ``fuzz/crashes/``: ``<harness>/<name>``."""
    exception: str
    where: str
    """``<file>:<function>`` of the innermost frame in ``verifier/`` or ``fuzz/``."""
    reason: str
    """What is wrong, for the owner of the code."""

    @property
    def harness(self) -> str:
        return self.input.partition("/")[0]


KNOWN: tuple[KnownCrash, ...] = ()
"""None at the moment: the crashes found so far are fixed (``fuzz/crashes/README.md``)."""


def signature(exc: BaseException) -> tuple[str, str]:
    """``(exception type, "<file>:<function>")`` of the innermost frame in ``verifier/`` or
    ``fuzz/``."""
    where = ""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        path = Path(frame.f_code.co_filename).resolve()
        if any(path.is_relative_to(own) for own in _OWN_CODE):
            where = f"{path.relative_to(ROOT).as_posix()}:{frame.f_code.co_name}"
    return type(exc).__name__, where


def known_crash(harness: str, exc: BaseException) -> KnownCrash | None:
    """The entry of :data:`KNOWN` that ``exc``, raised by ``harness``, is an instance of."""
    found = signature(exc)
    for crash in KNOWN:
        if crash.harness == harness and (crash.exception, crash.where) == found:
            return crash
    return None


def recorded(path: Path) -> KnownCrash | None:
    """The entry of :data:`KNOWN` for the crash input at ``path``, if any."""
    name = path.resolve().relative_to(CRASHES).as_posix()
    return next((crash for crash in KNOWN if crash.input == name), None)
