"""`gpunn info`: versions, each backend's availability with the reason, and what would be chosen now."""

from __future__ import annotations

import importlib.metadata
import platform

import numpy as np

import gpunn
from gpunn.backend import requested_device, requested_dtype, select
from gpunn.backend.cuda_probe import cuda_status


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cuda_details() -> list[str]:
    """CuPy/CUDA versions and each GPU's name and memory; empty when CUDA is unusable."""
    usable, _ = cuda_status(0)
    if not usable:
        return []
    import cupy

    rt = cupy.cuda.runtime
    lines = [
        f"CuPy {cupy.__version__}, CUDA runtime {rt.runtimeGetVersion()}, driver {rt.driverGetVersion()}"
    ]
    for index in range(rt.getDeviceCount()):
        props = rt.getDeviceProperties(index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        lines.append(f"cuda:{index}: {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
    return lines


def strict_status() -> tuple[bool, str]:
    try:
        import array_api_strict
    except ImportError:
        return False, 'array-api-strict is not installed (pip install "gpunn[test]")'
    return True, f"array-api-strict {array_api_strict.__version__}"


def info_lines() -> list[str]:
    """Everything `gpunn info` prints; raises InvalidDeviceError for a bad GPUNN_DEVICE/GPUNN_DTYPE."""
    spec, source = requested_device()
    dtype = requested_dtype()
    lines = [
        f"gpunn {gpunn.__version__}",
        f"Python {platform.python_version()} ({platform.machine()}), NumPy {np.__version__}",
        "backends:",
        "  cpu     available (NumPy)",
    ]
    strict_ok, strict_why = strict_status()
    lines.append(f"  strict  {'available' if strict_ok else 'unavailable'} ({strict_why})")
    cuda_ok, cuda_why = cuda_status(0)
    lines.append(f"  cuda    {'available' if cuda_ok else 'unavailable'} ({cuda_why})")
    lines += [f"    {line}" for line in cuda_details()]
    from gpunn.backend.collectives import nccl_available
    from gpunn.distributed import mpi_status

    mpi_ok, mpi_why = mpi_status()
    nccl_ok, nccl_why = nccl_available() if cuda_ok else (False, "needs CUDA")
    lines.append(
        f"distributed: MPI {'available' if mpi_ok else 'unavailable'} ({mpi_why}); "
        f"NCCL {'available' if nccl_ok else 'unavailable'} ({nccl_why})"
    )
    try:
        chosen = select().describe()
    except gpunn.DeviceUnavailableError as exc:
        chosen = f"{spec} from {source}, but unusable: {exc}"
    lines.append(f"device now: {chosen}; dtype {dtype}")
    return lines
