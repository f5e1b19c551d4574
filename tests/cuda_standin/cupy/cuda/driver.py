"""cupy.cuda.driver of the stand-in (cupy_backends/cuda/api/driver.pyx): the error a refused launch raises."""

from __future__ import annotations


class CUDADriverError(RuntimeError):
    """driver.pyx check_status raises it with the CUresult's name and description, e.g.
    'CUDA_ERROR_INVALID_VALUE: invalid argument' from cuLaunchKernel (launchKernel)."""
