"""How a recorded crash is recognised: by its exception type and innermost frame in our code."""

from __future__ import annotations

import pytest

from fuzz import known
from fuzz.harness import text
from fuzz.known import KnownCrash, known_crash, signature


def _crash() -> AttributeError:
    with pytest.raises(AttributeError) as caught:
        text(None)  # type: ignore[arg-type]
    return caught.value


def test_signature_names_the_innermost_frame_in_our_code() -> None:
    assert signature(_crash()) == ("AttributeError", "fuzz/harness.py:text")


def test_a_known_crash_is_recognised_for_its_harness_only(monkeypatch: pytest.MonkeyPatch) -> None:
    crash = KnownCrash("htu/none", "AttributeError", "fuzz/harness.py:text", "a test")
    monkeypatch.setattr(known, "KNOWN", (crash,))
    assert known_crash("htu", _crash()) is crash
    assert known_crash("proof", _crash()) is None
    assert known_crash("htu", ValueError("elsewhere")) is None
