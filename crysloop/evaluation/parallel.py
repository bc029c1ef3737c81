"""Process-parallel map with a progress bar, used for fingerprints and structure matching."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_all_start_methods, get_context
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
R = TypeVar("R")

SERIAL_BELOW = 16  # items; fewer than this run in-process (worker start-up costs seconds)


def default_jobs() -> int:
    """Worker processes to use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _context():
    """``fork`` where the platform has it (workers inherit the imports and need no ``__main__`` guard in the
    caller's script; they run only numpy/pymatgen code), else ``spawn``."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _run_chunk(func: Callable[[T], R], items: list[T]) -> list[R]:
    return [func(item) for item in items]


def _progress(description: str, total: int, enabled: bool) -> Progress:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
    progress.add_task(description, total=total)
    return progress


def parallel_map(
    func: Callable[[T], R],
    items: Sequence[T],
    n_jobs: int | None = None,
    progress: bool = False,
    description: str = "working",
    chunk_size: int | None = None,
) -> list[R]:
    """``[func(x) for x in items]`` over worker processes (order kept); ``func`` must be module-level."""
    items = list(items)
    n_jobs = default_jobs() if n_jobs is None else max(1, n_jobs)
    with _progress(description, len(items), progress) as bar:
        task = bar.task_ids[0]
        if n_jobs == 1 or len(items) < SERIAL_BELOW:
            results = []
            for item in items:
                results.append(func(item))
                bar.advance(task)
            return results
        size = chunk_size or max(1, min(64, len(items) // (n_jobs * 8) or 1))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        out: list[list[R] | None] = [None] * len(chunks)
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=_context()) as pool:
            futures = {pool.submit(_run_chunk, func, chunk): i for i, chunk in enumerate(chunks)}
            for future in as_completed(futures):
                index = futures[future]
                out[index] = future.result()
                bar.advance(task, len(chunks[index]))
    return [result for chunk in out for result in chunk]
