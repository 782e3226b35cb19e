"""The import rules of docs/architecture.md, kept true: a package of ``verifier`` imports only
packages of lower layers (and itself). Every import counts: module level, inside functions, and
under ``TYPE_CHECKING``.

Read with :mod:`ast`, not by importing, so a violation is found even in code no test runs.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "verifier"

# Lowest first. The same list, with a line a layer, is in docs/architecture.md.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"domain", "jose", "_generated"}),  # the floor: imports nothing of ours
    frozenset({"dpop", "mtls", "tokens", "replay"}),  # pure checks; adapters of the ports
    frozenset({"engine"}),  # the decision pipeline
    frozenset({"telemetry"}),  # observation: the sink and the ports' decorators
    frozenset({"doors"}),  # front doors: wire <-> RequestFacts / Decision
    frozenset({"config"}),  # typed settings sections
    frozenset({"app"}),  # the composition root
    frozenset({"server"}),  # hosting: listeners, threads, signals, drain
    frozenset({"cli"}),  # the command line
    frozenset({"__main__"}),  # python -m verifier
)
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def package_of(path: Path) -> str:
    """``verifier/doors/verify.py`` -> ``doors``; ``verifier/__main__.py`` -> ``__main__``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_packages(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, package) of every ``verifier.<package>`` an import names."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "verifier":
                for alias in node.names:
                    yield node.lineno, alias.name
            elif node.module.startswith("verifier."):
                yield node.lineno, node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("verifier."):
                    yield node.lineno, alias.name.split(".")[1]


def sources() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if "_generated" not in p.relative_to(PACKAGE).parts
    )


def violations(own: str, source: str, where: str) -> list[str]:
    """The imports of ``source`` (a module of package ``own``) that break the rule."""
    found = []
    for line, target in imported_packages(ast.parse(source, where)):
        if target == own:
            continue
        if target not in LAYER_OF:
            found.append(f"{where}:{line}: imports verifier.{target}, which is in no layer")
        elif LAYER_OF[target] >= LAYER_OF[own]:
            found.append(
                f"{where}:{line}: {own} (layer {LAYER_OF[own]}) imports {target} "
                f"(layer {LAYER_OF[target]}): only lower layers may be imported"
            )
    return found


def test_every_package_is_in_a_layer() -> None:
    packages = {package_of(p) for p in sources()} - {"__init__"}
    assert packages <= set(LAYER_OF), sorted(packages - set(LAYER_OF))


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path: Path) -> None:
    assert violations(package_of(path), path.read_text(), str(path.relative_to(ROOT))) == []


@pytest.mark.parametrize(
    ("own", "source"),
    [
        ("engine", "from verifier.doors.verify import verify_response\n"),
        ("dpop", "def f():\n    from verifier import tokens\n"),
        (
            "domain",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import verifier.jose\n",
        ),
        ("tokens", "from verifier.replay import memory\n"),  # same layer, other package
        ("doors", "from verifier.nowhere import x\n"),
    ],
)
def test_the_checker_reports_what_breaks_the_rule(own: str, source: str) -> None:
    assert len(violations(own, source, "example.py")) == 1


def test_the_checker_lets_downward_imports_pass() -> None:
    source = "from verifier.engine.pipeline import Verifier\nfrom verifier.doors import answers\n"
    assert violations("doors", source, "example.py") == []


def test_the_floor_imports_nothing_of_ours_above_itself() -> None:
    floor = LAYERS[0]
    for path in sources():
        if package_of(path) in floor:
            tree = ast.parse(path.read_text())
            assert {t for _, t in imported_packages(tree)} <= {package_of(path)}, path


def documented_layers(text: str) -> dict[int, frozenset[str]]:
    """The layer table of docs/architecture.md: ``| <n> | `pkg`, `pkg` | ... |`` rows."""
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.M)
    return {int(n): frozenset(re.findall(r"`([a-z_]+)`", names)) for n, names in rows}


def test_documented_layers_match() -> None:
    """docs/architecture.md states exactly these layers."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert documented_layers(text) == dict(enumerate(LAYERS))
