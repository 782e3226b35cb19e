"""README.md's "Use from your language" section: the client tests install each client with the
command it shows and run its code blocks, so that what a reader pastes is what was tested."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Use from your language"


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def snippet(language: str) -> str:
    """The one code block of ``language`` (python, js, go, java) in the section."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", section(), re.S | re.M)
    assert len(blocks) == 1, f"expected one {language} block in {SECTION!r}, found {len(blocks)}"
    return str(blocks[0])


def install_command(command: str) -> str:
    """``command`` after asserting the section shows it verbatim (as inline code)."""
    assert f"`{command}`" in section(), f"README's {SECTION!r} no longer shows `{command}`"
    return command


def paste(code: str, replacements: dict[str, str]) -> str:
    """``code`` with each placeholder (the README's example address, CA file, port) replaced by
    the test's; a placeholder the code lacks fails, so the README cannot drift from the test."""
    for old, new in replacements.items():
        assert old in code, f"the README snippet no longer contains {old!r}"
        code = code.replace(old, new)
    return code
