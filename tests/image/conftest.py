"""Session fixtures of the image tests: podman, the stand-in base, one build per run.

The figures (base, Python, build time, size, layers, start-up time, their budgets) are printed
at the end of the pytest run, whatever pytest captures.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest

from tests.deploy import dockerfile as df
from tests.image.podman import (
    ROOT,
    TEST_REPOSITORY,
    BuiltImage,
    Podman,
    build,
    ensure_base,
    missing_tools,
)

SESSION = f"{os.getpid()}-{int(time.time())}"
DOCS = ROOT / "docs" / "deploy.md"
FIGURES: dict[str, str] = {}


def docs_build_command() -> str:
    """The ``docker build`` command of docs/deploy.md (continuation lines joined)."""
    text = DOCS.read_text(encoding="utf-8")
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.M | re.S):
        lines = block.splitlines()
        for index, line in enumerate(lines):
            if line.startswith("docker build "):
                command = [line]
                while command[-1].endswith("\\"):
                    index += 1
                    command.append(lines[index])
                return "\n".join(command)
    raise AssertionError(f"no `docker build` command in {DOCS}")


@pytest.fixture(scope="session")
def podman() -> Podman:
    problem = missing_tools()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    podman = Podman()
    podman.remove_leftovers()
    FIGURES["podman"] = (
        f"{podman.run('--version').stdout.strip()}, runc, storage driver {podman.driver}, "
        f"cache {podman.cache_dir}"
    )
    return podman


@pytest.fixture(scope="session")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    """The Dockerfile built once per run, with the command docs/deploy.md shows, on the
    stand-in base (made once per machine, then reused)."""
    release = df.load(ROOT / "Dockerfile").global_args["DEBIAN_RELEASE"]
    base = ensure_base(podman, release)
    FIGURES["base"] = (
        f"{base.name}: Debian {release} + Debian's Python {base.python_version} "
        f"({base.origin} in {base.seconds:.0f} s)"
    )
    iidfile = tmp_path_factory.mktemp("build") / "iid"
    built = build(podman, base, docs_build_command(), f"{TEST_REPOSITORY}:{SESSION}", iidfile)
    FIGURES["build"] = f"{built.seconds:.0f} s (podman build --layers --no-cache)"
    try:
        yield built
    finally:
        podman.run("rmi", "--force", built.id, check=False)
        podman.run("image", "prune", "--force", check=False)


@pytest.fixture(scope="session")
def figures() -> dict[str, str]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container image figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name:>14}: {value}")
