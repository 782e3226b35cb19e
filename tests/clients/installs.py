"""The slow part of the client tests: installing each client the way its users do and building
the Go and Java clients. conftest.py starts all four together in the background, once per test
session, and each test fixture waits for the one it needs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clients import readme

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
NODE_DIR = ROOT / "clients" / "node"

PYTHON_INSTALL = readme.install_command("pip install ./clients/python")
SIGNER_INSTALL = "pip install './clients/python[signer]'"  # docs/clients.md
NODE_PACK = readme.install_command("npm pack ./clients/node")
# What the Node test project adds besides the client: the framework and panva's independent
# proof implementation.
NODE_EXTRA_PACKAGES = ("express@5.2.1", "dpop@2.1.2")
# Modules the fresh virtualenv must not hold: the server, and anything of an extra.
ABSENT = ("verifier", "redis", "cryptography")


def run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``command``; a failure fails the test that waits for it, with the output."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shown = " ".join(command)
        pytest.fail(f"{shown} failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return result.stdout


def make_clients(target: str, out: Path) -> Path:
    """``make <target>`` (clients/clients.mk) into the build directory ``out``."""
    command = ["make", "--no-print-directory", target, f"CLIENT_BUILD_DIR={out}"]
    run(command, cwd=ROOT, env={**os.environ, "MAKEFLAGS": ""})
    return out


@dataclass(frozen=True)
class FreshVenv:
    """A virtualenv into which the README's command installed the Python client, and what it
    held right after; then the documented command for the signer extra ran too."""

    python: Path
    clone: Path
    packages: frozenset[str]
    found: str  # whether the server, redis and cryptography can be imported: all None
    without_signer: str  # the error of importing the signer without its extra


def install_python_client(directory: Path) -> FreshVenv:
    """The README's command, run in a copy of clients/python as a clean clone has it (pip builds
    a local directory in place, and a build/ left by an earlier run could leak stale files into
    the wheel)."""
    clone = directory / "clone"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT / "clients" / "python", clone / "clients" / "python", ignore=ignore)
    venv = directory / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    pip_install(venv, PYTHON_INSTALL, clone)
    listed = json.loads(run([str(python), "-I", "-m", "pip", "list", "--format=json"]))
    probe = f"import importlib.util as u; print([u.find_spec(m) for m in {ABSENT!r}])"
    signer = subprocess.run(
        [str(python), "-I", "-c", "import dpop_verifier_client.proof"],
        capture_output=True,
        text=True,
        check=False,
    )
    fresh = FreshVenv(
        python=python,
        clone=clone,
        packages=frozenset(entry["name"].lower().replace("_", "-") for entry in listed),
        found=run([str(python), "-I", "-c", probe]).strip(),
        without_signer=signer.stderr if signer.returncode != 0 else "imported",
    )
    pip_install(venv, SIGNER_INSTALL, clone)
    return fresh


def pip_install(venv: Path, command: str, cwd: Path) -> None:
    """A ``pip install ...`` command line as documented, run with the virtualenv's pip."""
    pip, install, *arguments = shlex.split(command)
    quiet = ["--quiet", "--disable-pip-version-check"]
    run([str(venv / "bin" / pip), install, *quiet, *arguments], cwd=cwd)


def install_node_client(project: Path) -> Path:
    """A new npm project with the client installed from the tarball ``npm pack`` made (the
    README's commands, run from the project rather than from the clone)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("node and npm are missing: run make install-test-deps", pytrace=False)
    version = json.loads((NODE_DIR / "package.json").read_text())["version"]
    tarball = f"dpop-verifier-client-{version}.tgz"
    install = readme.install_command(f"npm install ./{tarball}")
    quiet = ["--no-audit", "--no-fund"]
    run([npm, "pack", str(NODE_DIR), "--silent", *quiet], cwd=project)
    if not (project / tarball).is_file():
        pytest.fail(f"npm pack did not write {tarball}", pytrace=False)
    package = {"name": "dpop-client-e2e", "private": True, "type": "module"}
    (project / "package.json").write_text(json.dumps(package), encoding="utf-8")
    arguments = shlex.split(install)[1:]
    run([npm, *arguments, *NODE_EXTRA_PACKAGES, "--prefer-offline", *quiet], cwd=project)
    shutil.copy(APPS / "node" / "e2e.mjs", project / "e2e.mjs")
    return project
