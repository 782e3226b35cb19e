"""``bench/bench_tracing.py`` still works end to end (not a timed test): a tiny run prints every
row, every traced call's spans reach the exporter in process and the OTLP receiver over gRPC."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

N = 40
ROWS = (
    "in process: telemetry off",
    "in process: tracing 100%",
    "in process: metrics",
    "in process: tracing 100% + metrics",
    "in process: tracing 10% + metrics",
    "in process: tracing 100%, SDK's OTLP encoder",
    "gRPC: telemetry off",
    "gRPC: tracing 100%, OTLP",
    "gRPC: metrics, OTLP + Prometheus",
    "gRPC: tracing 100% + metrics, OTLP + Prometheus",
    "gRPC: telemetry off, decision log all",
)


def test_a_tiny_run_prints_every_row_with_all_spans_exported() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_tracing.py"), "--n", str(N), "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = completed.stdout.splitlines()
    rows = {}
    for line in lines:
        for name in ROWS:
            if (
                line.startswith(name + " ")
                and line[len(name) :].split()[0].replace(",", "").isdigit()
            ):
                rows[name] = line[len(name) :].split()
    assert set(rows) == set(ROWS)
    for name, fields in rows.items():
        if "tracing 100%" in name:
            spans_per_call = float(fields[2])
            # Every call records 4 spans, the first one more (the issuer's keys); over gRPC the
            # warm-up call (denied at once: its server span alone) counts as one more call.
            least = 4.0 if name.startswith("in process") else (4 * N + 1) / (N + 1)
            assert spans_per_call >= round(least, 2), (name, fields)
    assert any(line.startswith("over gRPC, tracing 100%, OTLP:") for line in lines)
