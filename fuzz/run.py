"""Run every fuzz harness for a bounded time, each in its own process, a few at a time.

    python -m fuzz.run                          # what CI runs: 20 s each, 2 at a time
    python -m fuzz.run --seconds 600 proof jwk  # a longer local run of two harnesses
    python -m fuzz.run --save-crashes           # copy crash inputs to fuzz/crashes/<harness>/

Each harness starts from its seed corpus (``fuzz/corpus/<harness>/``) and the recorded crashes
(``fuzz/crashes/<harness>/``); the inputs it adds go to a scratch directory, never to the
repository. The libFuzzer seed is fixed (``--seed``): a run bounded by ``--runs`` (with
``--seconds`` to spare) repeats the same inputs; a time-bounded run explores as far as the
machine's speed allows. Exit status 1 when any
harness crashed (an exception outside its documented outcomes, a timeout or running out of
memory): the report names the input file and shows the traceback.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.harness import SCRATCH_ENV
from fuzz.harnesses import NAMES

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
CRASHES = ROOT / "fuzz" / "crashes"

DEFAULT_SECONDS = 20
DEFAULT_JOBS = 2
DEFAULT_SEED = 1
INPUT_TIMEOUT_S = 10
"""One input running longer than this is a finding (libFuzzer ``-timeout``)."""
RSS_LIMIT_MB = 2048
_ARTIFACTS = ("crash-", "timeout-", "oom-", "leak-")
_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+).*?exec/s: (\d+)")


@dataclass(frozen=True, slots=True)
class Stats:
    """libFuzzer's status line: executions, covered edges and features, corpus."""

    runs: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    corpus_size: str = ""
    exec_per_s: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    """How one harness's run ended."""

    name: str
    returncode: int
    seconds: float
    log: str
    crashes: tuple[Path, ...] = ()
    seeds: Stats = field(default_factory=Stats)
    """Coverage once the seed corpus has run (libFuzzer's INITED line)."""
    final: Stats = field(default_factory=Stats)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.crashes


def parse_stats(log: str) -> tuple[Stats, Stats]:
    """The INITED and the last status line of a libFuzzer log."""
    seeds = final = Stats()
    for line in log.splitlines():
        match = _STATUS.match(line)
        if match is None:
            continue
        runs, event, cov, ft, corpus, size, speed = match.groups()
        stats = Stats(int(runs), int(cov), int(ft), int(corpus), size, int(speed))
        if event == "INITED":
            seeds = stats
        final = stats
    return seeds, final


def command(name: str, *, seconds: float, seed: int, runs: int, scratch: Path) -> list[str]:
    """The libFuzzer command line of one harness."""
    corpora = [CORPUS / name, CRASHES / name]
    flags = [
        f"-seed={seed}",
        f"-max_total_time={max(1, round(seconds))}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={scratch / 'artifacts'}/",
        "-print_final_stats=1",
    ]
    if runs:
        flags.append(f"-runs={runs}")
    existing = [str(path) for path in corpora if path.is_dir()]
    return [sys.executable, "-m", "fuzz.target", name, *flags, str(scratch / "corpus"), *existing]


def run_one(name: str, *, seconds: float, seed: int, runs: int, workdir: Path) -> Result:
    """Fuzz one harness in a child process and collect what it found."""
    scratch = workdir / name
    (scratch / "corpus").mkdir(parents=True, exist_ok=True)
    (scratch / "artifacts").mkdir(exist_ok=True)
    started = time.monotonic()
    try:
        finished = subprocess.run(  # noqa: S603 - our own interpreter and module
            command(name, seconds=seconds, seed=seed, runs=runs, scratch=scratch),
            cwd=ROOT,
            env={**os.environ, SCRATCH_ENV: str(scratch)},
            capture_output=True,
            text=True,
            errors="replace",
            timeout=seconds + 120,
            check=False,
        )
        returncode, log = finished.returncode, finished.stdout + finished.stderr
    except subprocess.TimeoutExpired as exc:
        partial = exc.stderr or b""  # bytes, whatever text= says
        if isinstance(partial, bytes):
            partial = partial.decode("utf-8", errors="replace")
        returncode = -1
        log = f"{partial}\nthe fuzzer did not stop within {seconds + 120} s"
    crashes = tuple(
        sorted(p for p in (scratch / "artifacts").iterdir() if p.name.startswith(_ARTIFACTS))
    )
    seeds, final = parse_stats(log)
    return Result(name, returncode, time.monotonic() - started, log, crashes, seeds, final)


def run_all(
    names: Sequence[str],
    *,
    seconds: float = DEFAULT_SECONDS,
    seed: int = DEFAULT_SEED,
    runs: int = 0,
    jobs: int = DEFAULT_JOBS,
    workdir: Path,
) -> list[Result]:
    """Fuzz ``names``, ``jobs`` harnesses at a time; results in the order of ``names``."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(run_one, name, seconds=seconds, seed=seed, runs=runs, workdir=workdir)
            for name in names
        ]
        return [future.result() for future in futures]


def summary(result: Result) -> str:
    """One line: outcome, executions, coverage from the seeds to the end, corpus, speed."""
    outcome = "ok" if result.ok else f"CRASH (exit {result.returncode})"
    seeds, final = result.seeds, result.final
    return (
        f"{result.name:<14} {outcome:<16} {final.runs:>9} runs  cov {seeds.cov:>4} -> "
        f"{final.cov:<4} ft {seeds.ft:>5} -> {final.ft:<5} corpus {final.corpus:>4} "
        f"({final.corpus_size})  {final.exec_per_s:>6} exec/s  {result.seconds:5.1f} s"
    )


def traceback_of(log: str) -> str:
    """The Python traceback atheris printed for the crash (empty for a timeout or OOM)."""
    start = log.find("=== Uncaught Python exception: ===")
    if start == -1:
        return ""
    end = log.find("ERROR: libFuzzer", start)
    return log[start : end if end != -1 else None].strip()


def report(result: Result) -> str:
    """What a failed run found: each input (path, base64 when small), the traceback and the
    end of the fuzzer's output."""
    lines = [summary(result)]
    for path in result.crashes:
        data = path.read_bytes()
        lines.append(f"crash input: {path} ({len(data)} bytes)")
        if len(data) <= 4096:
            lines.append(f"  base64: {base64.b64encode(data).decode('ascii')}")
        lines.append(f"  reproduce: python -m fuzz.target {result.name} {path}")
        lines.append(f"  record: copy it to fuzz/crashes/{result.name}/ (tests/fuzz replays it)")
    lines += [traceback_of(result.log), "--- the end of the fuzzer's output ---"]
    lines += result.log.splitlines()[-25:]
    return "\n".join(lines)


def save_crashes(result: Result) -> list[Path]:
    """Copy ``result``'s crash inputs to ``fuzz/crashes/<harness>/``."""
    target = CRASHES / result.name
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(path, target / path.name)) for path in result.crashes]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="HARNESS", help=f"of {', '.join(NAMES)}")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per harness")
    parser.add_argument("--runs", type=int, default=0, help="stop after this many inputs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="harnesses at a time")
    parser.add_argument("--save-crashes", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NAMES))
    if unknown:
        parser.error(f"unknown harness {', '.join(unknown)} (known: {', '.join(NAMES)})")
    workdir = Path(tempfile.mkdtemp(prefix="dpop-fuzz-"))
    results = run_all(
        args.names or NAMES,
        seconds=args.seconds,
        seed=args.seed,
        runs=args.runs,
        jobs=args.jobs,
        workdir=workdir,
    )
    for result in results:
        print(summary(result) if result.ok else report(result))
        if args.save_crashes:
            for saved in save_crashes(result):
                print(f"saved {saved.relative_to(ROOT)}")
    if all(result.ok for result in results):
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"the crash inputs and each harness's new corpus are kept in {workdir}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
