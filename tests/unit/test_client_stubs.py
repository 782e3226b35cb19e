"""The API contract around the clients: the committed Go, Java and Node stubs are exactly what
scripts/gen-protos makes, ``buf lint`` passes, and protos/ is compatible with main's committed
API (scripts/check-proto-breaking). The Python stubs have their own drift test
(test_generated_stubs.py). The tools come from ``make install-test-deps``; a missing one fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_STUBS = {
    "go": "clients/go/dpopverifierv1",
    "java": "clients/java/src/generated/java",
    "node": "clients/node/gen",
}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_committed_client_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "gen-protos")
    result = _run(sys.executable, script, "--lang", ",".join(CLIENT_STUBS), "--root", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    for lang, directory in CLIENT_STUBS.items():
        fresh, committed = _tree(tmp_path / directory), _tree(ROOT / directory)
        assert fresh, f"{lang}: nothing generated"
        assert sorted(fresh) == sorted(committed), f"{lang}: run scripts/gen-protos (files differ)"
        stale = [name for name in fresh if fresh[name] != committed[name]]
        assert not stale, f"{lang}: run scripts/gen-protos: {stale} drifted"


@pytest.fixture(scope="module")
def buf() -> str:
    path = Path(sys.executable).parent / "buf"
    if not path.exists():
        pytest.fail("buf not installed: the dev extras ship it (buf-bin)", pytrace=False)
    return str(path)


def test_buf_lint_passes(buf: str) -> None:
    result = _run(buf, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_protos_are_compatible_with_main(buf: str) -> None:
    result = _run(sys.executable, str(ROOT / "scripts" / "check-proto-breaking"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "compatible with" in result.stdout


def test_the_breaking_check_catches_a_renamed_field(buf: str, tmp_path: Path) -> None:
    """The check is not vacuous: a renamed field in a copy of the API fails it."""
    proto = (ROOT / "protos" / "dpop" / "verifier" / "v1" / "verifier.proto").read_text()
    assert "string route = 10;" in proto
    broken = tmp_path / "protos" / "dpop" / "verifier" / "v1" / "verifier.proto"
    broken.parent.mkdir(parents=True)
    broken.write_text(proto.replace("string route = 10;", "string route_name = 10;"))
    result = _run(buf, "breaking", str(tmp_path / "protos"), "--against", "protos")
    assert result.returncode != 0
    assert 'changed name from "route" to "route_name"' in result.stdout
