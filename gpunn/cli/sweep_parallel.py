"""`gpunn sweep --jobs K`: combinations in K worker processes, the CPU's BLAS threads split between them.

Each worker limits BLAS to cores // K threads (threadpoolctl) so K runs do not oversubscribe the cores.
A run's result does not depend on where it ran: the same settings train the same weights.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _limit_blas_threads(threads: int) -> None:
    import numpy  # noqa: F401  threadpoolctl limits only libraries already loaded: load NumPy's BLAS first
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")  # kept for the worker's lifetime
    from gpunn.backend.numpy_backend import tune_host_allocator

    tune_host_allocator()  # a worker of the sweep command: its allocator is the command's to tune


def run_parallel(runs: list, jobs: int, common: dict) -> list:
    """Rows in combination order; a line as each run finishes. A run that diverges or stalls is a failed
    row (see sweep.SweepRow); any other error stops the sweep."""
    from gpunn.cli.sweep import run_one

    jobs = min(jobs, len(runs))
    threads = max(1, cores() // jobs)
    print(f"{len(runs)} combinations in {jobs} processes, {threads} BLAS thread(s) each", flush=True)
    rows = {}
    with ProcessPoolExecutor(
        jobs, mp_context=get_context("spawn"), initializer=_limit_blas_threads, initargs=(threads,)
    ) as pool:
        futures = {pool.submit(run_one, run, common): run for run in runs}
        try:
            for future in as_completed(futures):
                run = futures[future]
                rows[run.number] = row = future.result()
                outcome = (
                    f"failed: {row.failure}"
                    if row.failure
                    else f"test {row.test_accuracy:.2%} in {row.seconds:.2f} s"
                )
                print(
                    f"[{run.number}/{run.total}] {run.label}: {outcome} ({len(rows)}/{len(runs)} done)",
                    flush=True,
                )
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return [rows[run.number] for run in runs]
