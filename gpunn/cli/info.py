"""`gpunn info`: versions, each backend's availability with the reason, and what would be chosen now."""

from __future__ import annotations

import platform

import numpy as np

import gpunn
from gpunn.backend import requested_device, requested_dtype, select
from gpunn.backend.availability import collective_line, device_lines


def info_lines() -> list[str]:
    """Everything `gpunn info` prints; raises InvalidDeviceError for a bad GPUNN_DEVICE/GPUNN_DTYPE."""
    spec, source = requested_device()
    dtype = requested_dtype()
    lines = [
        f"gpunn {gpunn.__version__}",
        f"Python {platform.python_version()} ({platform.machine()}), NumPy {np.__version__}",
        "backends:",
        *device_lines(),
    ]
    from gpunn.training.distributed import mpi_status

    mpi_ok, mpi_why = mpi_status()
    lines.append(
        f"distributed: MPI {'available' if mpi_ok else 'unavailable'} ({mpi_why}); {collective_line()}"
    )
    try:
        chosen = select().describe()
    except gpunn.DeviceUnavailableError as exc:
        chosen = f"{spec} from {source}, but unusable: {exc}"
    lines.append(f"device now: {chosen}; dtype {dtype}")
    return lines
