"""Thread races for tests of code the thread-pool server calls from many threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def race_in_threads(calls: Sequence[Callable[[], T]]) -> list[T | BaseException]:
    """Run each call on a thread of its own, all released at once by a barrier; the results
    (or the exceptions raised) in call order."""
    barrier = threading.Barrier(len(calls))
    results: list[T | BaseException] = [RuntimeError("not run")] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
