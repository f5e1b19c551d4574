"""Summing one flat buffer across ranks: MPI on host arrays, NCCL on CuPy arrays (no host round trip).

The device-specific part of data parallelism lives here; gpunn/distributed.py is written against it.
"""

from __future__ import annotations

import numpy as np


class MpiAllreduce:
    """MPI Allreduce (sum). NumPy buffers go as they are; other devices go through the host (strict) or,
    for CuPy, straight from device memory when the MPI library is CUDA-aware."""

    name = "mpi"

    def __init__(self, comm, backend):
        self.comm, self.backend = comm, backend
        self._device_buffers = backend.name == "cupy" and _cuda_aware()
        if self._device_buffers:
            self.name = "mpi (cuda-aware)"

    def sum_(self, flat):
        """Sum `flat` over all ranks; returns the summed array (in place where the device allows)."""
        from mpi4py import MPI

        if self.backend.name == "numpy":
            self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            return flat
        if self._device_buffers:
            self.backend.synchronize()  # MPI reads device memory outside CuPy's stream
            self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
            return flat
        host = self.backend.to_host(flat)
        self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        return self.backend.from_host(host, dtype=str(host.dtype))


class NcclAllreduce:
    """NCCL allreduce of CuPy device buffers; the NCCL id travels over MPI (or not at all for one rank)."""

    name = "nccl"

    def __init__(self, backend, rank: int = 0, size: int = 1, comm=None):
        from cupy.cuda import nccl

        self.backend, self._nccl = backend, nccl
        uid = nccl.get_unique_id() if rank == 0 else None
        if comm is not None and size > 1:
            uid = comm.bcast(uid, root=0)
        with backend._cuda:
            self.comm = nccl.NcclCommunicator(size, uid, rank)

    def sum_(self, flat):
        nccl, cupy = self._nccl, self.backend.xp
        kind = {np.dtype("float32"): nccl.NCCL_FLOAT32, np.dtype("float64"): nccl.NCCL_FLOAT64}[flat.dtype]
        stream = cupy.cuda.get_current_stream()
        self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, kind, nccl.NCCL_SUM, stream.ptr)
        return flat


def nccl_available() -> tuple[bool, str]:
    try:
        from cupy.cuda import nccl  # noqa: F401
    except Exception as exc:  # ImportError, or CuPy built without NCCL
        return False, f"NCCL through CuPy unavailable ({type(exc).__name__}: {exc})"
    return True, "NCCL through CuPy"


def _cuda_aware() -> bool:
    try:
        from mpi4py import MPI

        return "cuda" in MPI.Get_library_version().lower()
    except Exception:
        return False
