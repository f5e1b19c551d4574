"""Summing one flat buffer across ranks: MPI on host arrays, NCCL on CuPy arrays (no host round trip).

The device-specific part of data parallelism lives here; gpunn/training/distributed.py is written against it.
"""

from __future__ import annotations

import numpy as np

from gpunn.backend.cuda_probe import import_cupy
from gpunn.errors import DeviceUnavailableError


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
        nccl = _nccl_module()
        if nccl is None:
            raise DeviceUnavailableError(
                f"distributed CUDA training needs NCCL: {nccl_available()[1]}; or train on the CPU ranks "
                "with --device cpu"
            )
        self.backend, self._nccl = backend, nccl
        uid = nccl.get_unique_id() if rank == 0 else None
        if comm is not None and size > 1:
            uid = comm.bcast(uid, root=0)
        with backend.device_context():
            self.comm = nccl.NcclCommunicator(size, uid, rank)

    def sum_(self, flat):
        """In place, on the stream the gradients were written on: the current stream of the backend's own
        device (CuPy keeps one per device and thread), whatever device the calling thread has current."""
        nccl, cupy = self._nccl, self.backend.xp
        kind = {np.dtype("float32"): nccl.NCCL_FLOAT32, np.dtype("float64"): nccl.NCCL_FLOAT64}[flat.dtype]
        with self.backend.device_context():
            stream = cupy.cuda.get_current_stream()
            self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, kind, nccl.NCCL_SUM, stream.ptr)
        return flat


def nccl_available() -> tuple[bool, str]:
    """(usable, description) of NCCL through CuPy, naming the package to install when it is missing."""
    nccl = _nccl_module()
    if nccl is not None:
        return True, "NCCL through CuPy"
    try:  # without CuPy the fix is CuPy itself, not the NCCL wheel
        import_cupy()
    except DeviceUnavailableError as exc:
        return False, f"NCCL comes through CuPy: {str(exc).removeprefix('CUDA unavailable: ')}"
    return False, (
        f"CuPy cannot load the NCCL library; {_nccl_install_hint()} (CuPy finds the nvidia-nccl wheel)"
    )


def _nccl_module():
    """CuPy's NCCL module when the library loaded, else None.

    `from cupy.cuda import nccl` never fails: cupy/cuda/nccl.py catches the ImportError of the library and
    sets `nccl.available = False`, leaving no functions behind (CuPy v13.6 and v14.2 alike).
    """
    try:
        from cupy.cuda import nccl
    except Exception:  # no CuPy at all
        return None
    return nccl if getattr(nccl, "available", False) else None


def _nccl_install_hint() -> str:
    """CuPy's own advice (cupy/_environment.py `_preload_warning`): the nvidia-nccl-cuXX wheel."""
    try:
        import cupy

        major = int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:
        return 'pip install "nvidia-nccl-cu12" or "nvidia-nccl-cu13" (the CUDA major of your CuPy)'
    return f'pip install "nvidia-nccl-cu{major}"'


def _cuda_aware() -> bool:
    try:
        from mpi4py import MPI

        return "cuda" in MPI.Get_library_version().lower()
    except Exception:
        return False
