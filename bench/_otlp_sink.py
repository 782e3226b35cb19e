"""The OTLP/gRPC receiver of the tests (``tests.support.otlp_receiver``) as a process, for the
tracing rows of ``bench/run.py``. Prints ``otlp sink listening on http://HOST:PORT``; on SIGTERM
prints ``spans received: N`` and exits."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.otlp_receiver import otlp_grpc_receiver


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with otlp_grpc_receiver() as (endpoint, store):
        print(f"otlp sink listening on {endpoint}", flush=True)
        stop.wait()
        print(f"spans received: {len(store.spans())}", flush=True)


if __name__ == "__main__":
    main()
