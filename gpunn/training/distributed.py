"""Data-parallel training over MPI (`mpiexec -n K gpunn train --distributed`).

Every rank draws the same batch order from the same seed, computes the gradient of its contiguous shard of
each global batch, and the ranks sum one flat buffer per step (all gradients, pre-scaled by shard/global
size, plus one slot that says whether any rank was asked to stop), so every rank applies the same update:
K ranks end with the weights of one process. Rank 0 alone prints and writes. MPI starts only here.
"""

from __future__ import annotations

import os
import socket
import sys
import time

import numpy as np

from gpunn.errors import DistributedError

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


class Job:
    """The MPI job as this rank sees it: its rank, the size, and where every rank's process lives."""

    def __init__(self, comm):
        from mpi4py import MPI

        comm.Set_errhandler(MPI.ERRORS_RETURN)  # errors become exceptions we report, not MPICH's abort
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.peers = comm.allgather((socket.gethostname(), os.getpid()))
        self.blas_threads = share_blas_threads(comm)

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
            self.comm.Abort(code)
        finally:
            os._exit(code)  # Abort may return when a peer is already gone


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
        flat = self.reducer.sum_(flat)
        buffer.set_gradient(flat)
        return read_flag and bool(backend.to_host(flat[-1:])[0] > 0)

    def sum_host(self, values) -> np.ndarray:
        """Sum small host values (epoch totals) over ranks."""
        from mpi4py import MPI

        array = np.array(values, dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        return array

    def barrier(self) -> None:
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
