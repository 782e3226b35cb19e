"""Docs that run when pasted: the shell blocks of the README's set-up and quick-start sections,
and every block of docs/ marked ``<!-- runnable -->``, run as a reader pastes them.

They run in order, in a temporary copy of the clone (symbolic links to its files, with ``.venv``
the virtualenv running the tests) and in a new network namespace, so that the documented ports
(50051 for ``make run``, 50052, ...) are free even on a machine where a real ``make run`` is
serving. ``make run`` starts first and stays up, as in a reader's first terminal, until a
Ctrl-C at the end. Each block must give what it promises: the transcript of a console block,
the text a marker expects, and a zero exit status for a script block (``bash -e``: every line).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tests.docs.runnable import Block, blocks, output_matches

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
README_SECTIONS = ("Set-up: two commands", "Try it in two minutes")
NOT_RUN = {"make test": "the test suite itself: CI runs it"}
"""Blocks of those sections that are not run here, by their text, and why."""
LEFT_OUT = (".git", ".dpop-dev", "build")
RUN_BY_THEIR_OWN_TESTS = {
    "gateways.md": "tests/gateways/test_docs_blocks.py",  # with a test gateway's placeholders
}
"""docs/ pages whose runnable blocks need what a test of their own provides."""


def readme_blocks() -> list[Block]:
    return [b for b in blocks(ROOT / "README.md", ROOT) if b.section in README_SECTIONS]


def docs_blocks() -> list[Block]:
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name not in RUN_BY_THEIR_OWN_TESTS:
            found += [b for b in blocks(page, ROOT) if b.runnable]
    return found


def test_every_shell_block_of_the_quick_start_is_run() -> None:
    shell = [b for b in readme_blocks() if b.lang in ("sh", "console", "bash")]
    assert len(shell) >= 4
    for block in shell:
        command = block.text.split("#")[0].strip()
        assert block.runnable or command in NOT_RUN, f"{block.source} is not marked runnable"
    assert next(b.background for b in shell if b.runnable), "make run starts first"
    assert docs_blocks(), "docs/ has no runnable block"
    for page, test in RUN_BY_THEIR_OWN_TESTS.items():
        assert not (ROOT / "docs" / page).exists() or (ROOT / test).exists(), page


def _tree(scratch: Path) -> Path:
    """A copy of the clone made of symbolic links, with .venv the virtualenv of this run."""
    tree = scratch / "clone"
    tree.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in LEFT_OUT and not entry.name.startswith(".venv"):
            (tree / entry.name).symlink_to(entry)
    (tree / ".venv").symlink_to(VENV)
    return tree


def _environment(scratch: Path) -> dict[str, str]:
    """A reader's shell: no virtualenv on PATH, no DPOP_* or OTEL_* variables."""
    keep = ("HOME", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env["TMPDIR"] = str(scratch / "tmp")
    (scratch / "tmp").mkdir()
    return env


def _run(plan: dict[str, Any], scratch: Path) -> list[dict[str, Any]]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is needed to give the docs their own ports", False)
    plan_file = scratch / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    done = subprocess.run(
        [unshare, "--net", "--map-root-user", "--", sys.executable, "-m", "tests.docs.runnable",
         str(plan_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0 or not done.stdout.startswith("["):
        pytest.fail(f"could not run the blocks in a network namespace:\n{done.stderr}", False)
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def test_the_quick_start_and_runnable_docs_do_what_they_say(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    env = _environment(tmp_path)
    dry_run = subprocess.run(
        ["make", "-n", "run"], cwd=tree, env=env, capture_output=True, text=True, timeout=60
    )
    assert "pip install" not in dry_run.stdout, (
        "the virtualenv's install stamp is older than pyproject.toml: run `make install-dev` "
        "(make run would reinstall into the temporary copy)"
    )
    to_run = [b for b in readme_blocks() + docs_blocks() if b.runnable]
    plan = {
        "cwd": str(tree),
        "env": env,
        "scratch": str(tmp_path),
        "blocks": [asdict(b) for b in to_run],
    }
    results = _run(plan, tmp_path)

    by_source = {r["source"]: r for r in results}
    problems: list[str] = []
    for block in to_run:
        result = by_source.get(block.source)
        if result is None:
            problems.append(f"{block.source}: not run (an earlier block failed)")
            continue
        problems += _judge(block, result)
    assert not problems, "\n\n".join(problems)


def _judge(block: Block, result: dict[str, Any]) -> list[str]:
    where = f"{block.source} ({block.section})"
    problems = []
    if block.background:
        output = result["output"][-3000:]
        if not result["ready"]:
            return [f"{where}: never said it was listening:\n{output}"]
        # make itself may end by the signal (-2); the service must drain and stop, and nothing
        # may be left running.
        stopped = "verifier.server.runtime: stopped" in result["output"]
        if result.get("stopped") not in (0, -2, 130) or not stopped or result["left_running"]:
            problems.append(
                f"{where}: Ctrl-C did not stop it cleanly ({result.get('stopped')}):\n{output}"
            )
        if "==> ready. In a second terminal" not in result["output"]:
            problems.append(f"{where}: printed no next step once listening:\n{output}")
        return problems
    if block.lang == "console":
        for step in result["steps"]:
            if (
                not output_matches(step["expected"], step["stdout"])
                or "Traceback" in step["stderr"]
            ):
                problems.append(
                    f"{where}: $ {step['command']}\n--- expected\n{step['expected']}"
                    f"--- got (status {step['status']})\n{step['stdout']}{step['stderr']}"
                )
        return problems
    output = result["stdout"] + result["stderr"]
    if result["status"] != 0:
        problems.append(f"{where}: exit status {result['status']}:\n{output[-3000:]}")
    for text in block.expect:
        if text not in result["stdout"]:
            problems.append(f"{where}: promised {text!r}, printed:\n{output[-3000:]}")
    if result["left_running"]:
        problems.append(f"{where}: left a process running")
    return problems
