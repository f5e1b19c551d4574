"""Data-parallel training over MPI (`mpiexec -n K gpunn train --distributed`).

Every rank draws the same batch order from the same seed, computes the gradient of its contiguous shard of
each global batch, and the ranks sum one flat buffer per step (all gradients, pre-scaled by shard/global
size, plus one slot that says whether any rank was asked to stop), so every rank applies the same update:
K ranks end with the weights of one process. Rank 0 alone prints and writes. MPI starts only here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import threading
import time

import numpy as np

from gpunn.errors import DistributedError, Options, RanksDisagreeError

TIMEOUT_VARIABLE = "GPUNN_MPI_TIMEOUT"
DEFAULT_TIMEOUT = 300.0  # seconds one collective may wait for the others (a checkpoint save, a late rank)
DATA_WAIT_TIMEOUT = 3600.0  # the ranks wait this long for rank 0 to fetch (or download) the data

LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
INSTALL_HINT = 'pip install "gpunn[mpi]"'


def launched_by_mpi() -> bool:
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def mpi_status() -> tuple[bool, str]:
    """(usable, description) for `gpunn info`, without initialising MPI."""
    try:
        import mpi4py
    except ImportError:
        return False, f"mpi4py is not installed ({INSTALL_HINT})"
    return True, f"mpi4py {mpi4py.__version__}" + ("; launched by mpiexec" if launched_by_mpi() else "")


def collective_timeout() -> float:
    """Seconds a collective may wait: GPUNN_MPI_TIMEOUT if set (a positive number), else DEFAULT_TIMEOUT."""
    text = os.environ.get(TIMEOUT_VARIABLE)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise DistributedError(f"{TIMEOUT_VARIABLE} must be a number of seconds > 0, got {text!r}")
    return seconds


class Watchdog:
    """Ends the whole job when one collective waits longer than its limit: a rank that hangs, is stopped
    or never calls the same collective cannot leave the others waiting forever (MPI itself never times out).

    A thread looks once a second; `waiting(what)` brackets each collective."""

    def __init__(self, job: Job, timeout: float):
        self.job, self.timeout = job, timeout
        self._waiting: tuple[str, float, float] | None = None  # (what, since, limit)
        threading.Thread(target=self._watch, name="gpunn-mpi-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def waiting(self, what: str, limit: float | None = None):
        self._waiting = (what, time.monotonic(), self.timeout if limit is None else limit)
        try:
            yield
        finally:
            self._waiting = None

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[1] > waiting[2]:
                what, _, limit = waiting
                self.job.fail(
                    DistributedError(
                        f"no answer from the other ranks for {limit:g} s in {what}; stopping the whole job "
                        f"(a rank hangs, was stopped, or runs other settings; {TIMEOUT_VARIABLE} sets the "
                        "limit). The last checkpoint is kept: continue with `gpunn train --resume OUT`"
                    )
                )


class Job:
    """The MPI job as this rank sees it: its rank, the size, and where every rank's process lives."""

    def __init__(self, comm):
        from mpi4py import MPI

        comm.Set_errhandler(MPI.ERRORS_RETURN)  # errors become exceptions we report, not MPICH's abort
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.watchdog = Watchdog(self, collective_timeout())
        with self.waiting("the start of the job"):
            self.peers = comm.allgather((socket.gethostname(), os.getpid()))
        self.blas_threads = share_blas_threads(comm)

    def waiting(self, what: str, limit: float | None = None):
        """Bracket one collective: the watchdog ends the job if it lasts over the limit."""
        return self.watchdog.waiting(what, limit)

    def agree(self, settings: dict, facts: dict | None = None, limit: float | None = None) -> None:
        """Every rank's `settings` (option name -> value) and `facts` (description -> value) are rank 0's,
        or every rank raises the same RanksDisagreeError naming each one that differs (one allgather).

        Ranks that trained different settings or data would hang in an Allreduce (another number of
        steps) or silently average gradients of different problems."""
        facts = facts or {}
        with self.waiting("comparing the ranks' settings and data", limit):
            everyone = self.comm.allgather((settings, facts))
        differences = []
        for index, is_option in ((0, True), (1, False)):  # the settings, then the facts
            for key in sorted({k for ranks in everyone for k in ranks[index]}):
                values = [ranks[index].get(key) for ranks in everyone]
                other = next((r for r, v in enumerate(values) if v != values[0]), None)
                if other is not None:
                    differences.append((key, is_option, values[0], other, values[other]))
        if differences:
            raise RanksDisagreeError(Options(lambda n: _disagreement(differences, n)))

    def dead_ranks(self) -> list[int]:
        """Ranks on this host whose process no longer exists."""
        here = socket.gethostname()
        dead = []
        for rank, (host, pid) in enumerate(self.peers):
            if rank != self.rank and host == here:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    dead.append(rank)
                except PermissionError:
                    pass
        return dead

    def fail(self, exc: BaseException, code: int = 1) -> None:
        """Print one line naming the rank(s) involved and bring the whole job down now."""
        if _is_mpi_error(exc):
            time.sleep(0.2)  # let a dying peer finish dying before we look for it
            dead = self.dead_ranks()
            who = f"rank(s) {', '.join(map(str, dead))} died" if dead else "another rank failed"
            message = (
                f"{who}; stopping the whole job. The last checkpoint is kept: continue with "
                "`gpunn train --resume OUT` on any number of ranks"
            )
        else:
            message = str(exc) or type(exc).__name__
        print(f"gpunn: error: rank {self.rank}: {message}", file=sys.stderr, flush=True)
        try:
            _silence_stderr()  # MPI_Abort adds a line of its own (MPICH: "Abort(1) on node ..."): ours is the one
            self.comm.Abort(code)
        finally:
            os._exit(code)  # Abort may return when a peer is already gone


def _silence_stderr() -> None:
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def _disagreement(differences: list, name) -> str:
    parts = [
        f"{name(key) if is_option else key} differs (rank 0: {_shown(first)}, rank {rank}: {_shown(theirs)})"
        for key, is_option, first, rank, theirs in differences
    ]
    return (
        "the ranks were not started alike: "
        + "; ".join(parts)
        + ": start every rank with the same settings and the same data"
    )


def _shown(value) -> str:
    if value is None:
        return "not given"
    if isinstance(value, str) and len(value) == 64:  # a digest: its start tells them apart
        return f"sha256 {value[:12]}..."
    return repr(value) if isinstance(value, str) else str(value)


def digest(*arrays) -> str:
    """SHA-256 of the arrays' shapes, dtypes and bytes: equal exactly when the arrays are."""
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        sha.update(f"{array.shape}{array.dtype.str}".encode())
        sha.update(array.view(np.uint8).reshape(-1) if array.size else b"")
    return sha.hexdigest()


def _is_mpi_error(exc: BaseException) -> bool:
    try:
        from mpi4py import MPI
    except ImportError:
        return False
    return isinstance(exc, MPI.Exception)


class Distributed:
    """This rank's place in the job and the one collective a step needs."""

    def __init__(self, job: Job, backend):
        comm = job.comm
        self.job, self.comm, self.backend = job, comm, backend
        self.rank, self.size = job.rank, job.size
        self.reducer = backend.allreduce(comm, self.rank, self.size)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's contiguous share of n items."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def sum_gradients(self, buffer, scale: float, stop: bool, read_flag: bool = True) -> bool:
        """Gradient <- sum over ranks of scale * gradient: one Allreduce of the model's flat gradient buffer.

        The buffer's spare last slot carries this rank's stop request; returns whether any rank asked to stop
        (read from the device only when `read_flag`, so a GPU need not synchronise every step).
        """
        backend = self.backend
        flat = buffer.collect_gradient()
        flat[-1] = 1.0 if stop else 0.0
        if scale != 1.0:  # the flag is scaled too: still > 0 exactly when some rank stops
            flat = backend.scale(flat, scale)
        with self.job.waiting("the gradient sum of a training step"):
            flat = self.reducer.sum_(flat)
        buffer.set_gradient(flat)
        return read_flag and bool(backend.to_host(flat[-1:])[0] > 0)

    def sum_host(self, values) -> np.ndarray:
        """Sum small host values (epoch totals) over ranks."""
        from mpi4py import MPI

        array = np.array(values, dtype=np.float64)
        with self.job.waiting("the sum of the epoch's totals"):
            self.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        return array

    def data_barrier(self) -> None:
        """Rank 0 fetches (or downloads) the data while the others wait here: a long wait, still bounded."""
        with self.job.waiting("waiting for rank 0 to fetch the data", DATA_WAIT_TIMEOUT):
            self.comm.Barrier()


def local_placement(comm) -> tuple[int, int]:
    """(rank among the ranks on this host, how many ranks this host runs)."""
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    placement = local.Get_rank(), local.Get_size()
    local.Free()
    return placement


BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def share_blas_threads(comm) -> int | None:
    """Limit this rank's BLAS to cores / ranks on this host; returns the thread count (None: left as set).

    Every rank would otherwise start a BLAS pool as wide as the machine: 2 ranks on 2 cores spun 4 threads
    and ran 16.5 s per epoch instead of 0.24 s. An explicit OMP/OPENBLAS/MKL_NUM_THREADS is respected.
    """
    if any(name in os.environ for name in BLAS_THREAD_VARIABLES):
        return None
    from mpi4py import MPI
    from threadpoolctl import threadpool_limits

    ranks_here = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // ranks_here)
    threadpool_limits(limits=threads, user_api="blas")
    return threads


def start() -> Job:
    """This rank's Job, or one clear DistributedError saying how to launch."""
    if not launched_by_mpi():
        raise DistributedError(
            "--distributed runs under MPI: launch it as `mpiexec -n 2 gpunn train --distributed ...` "
            f"(mpiexec comes with {INSTALL_HINT})"
        )
    try:
        from mpi4py import MPI
    except ImportError:
        raise DistributedError(f"--distributed needs mpi4py and an MPI library: {INSTALL_HINT}") from None
    return Job(MPI.COMM_WORLD)
