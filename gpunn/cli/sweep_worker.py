"""One combination of `gpunn sweep --jobs K`, in a process of its own (`python -m gpunn.cli.sweep_worker`).

The job arrives on stdin (a length, then a pickle of the run, the common settings and the BLAS thread
count); the outcome leaves on stdout as one pickle of plain values, never an exception object (a message
that names options holds a lambda, which does not pickle). Stdin stays open while the sweep lives: its
end means the sweep is gone, and the run then stops as if signalled (saved, resumable). The parent puts
each worker in a process group of its own, so a Ctrl-C in the terminal reaches the sweep alone, which
stops its workers itself.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import traceback

LENGTH_BYTES = 8


def read_job(fd: int = 0):
    """The (run, common settings, BLAS threads) the parent wrote: a big-endian length, then the pickle."""
    size = int.from_bytes(_read_exactly(fd, LENGTH_BYTES), "big")
    return pickle.loads(_read_exactly(fd, size))


def _read_exactly(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the sweep closed its pipe before sending the whole job")
        data += chunk
    return bytes(data)


def encode_job(run, common: dict, threads: int) -> bytes:
    job = pickle.dumps((run, common, threads))
    return len(job).to_bytes(LENGTH_BYTES, "big") + job


def _watch_the_sweep(fd: int = 0) -> None:
    """Return only when stdin ends (the sweep exited or was killed); then stop this run like a SIGTERM."""
    while os.read(fd, 4096):  # os.read, not sys.stdin: a daemon thread must hold no lock at shutdown
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def outcome(run, common: dict) -> tuple:
    """("row", SweepRow) | ("interrupted", message) | ("error", message, exit code) | ("crash", message)."""
    from gpunn.cli.sweep import run_one
    from gpunn.errors import GpunnError, TrainingInterrupted, cli_message

    try:
        return ("row", run_one(run, common))
    except TrainingInterrupted as exc:  # a signal to this worker: the run saved where it stood
        return ("interrupted", cli_message(exc))
    except KeyboardInterrupt:  # SIGINT before the epoch loop took over the signals
        return ("interrupted", "SIGINT received before training began")
    except GpunnError as exc:
        return ("error", cli_message(exc), exc.exit_code)
    except Exception as exc:  # a bug: its traceback goes to stderr, the sweep gets one line
        traceback.print_exc()
        return ("crash", f"{type(exc).__name__}: {exc}")


def limit_blas_threads(threads: int) -> None:
    import numpy  # noqa: F401  threadpoolctl limits only libraries already loaded: load NumPy's BLAS first
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")  # kept for the worker's lifetime


def main() -> int:
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the pickle the sweep reads
    try:
        run, common, threads = read_job()
    except EOFError:  # the sweep was stopped while starting this worker
        return 1
    threading.Thread(target=_watch_the_sweep, daemon=True).start()
    limit_blas_threads(threads)
    from gpunn.backend.numpy_backend import tune_host_allocator

    tune_host_allocator()  # a worker of the sweep command: its allocator is the command's to tune
    pickle.dump(outcome(run, common), results)
    results.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
