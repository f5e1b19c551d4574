"""Can CUDA work here? Every reason it cannot, as a sentence that says what to do."""

from __future__ import annotations

import importlib

from gpunn.errors import DeviceUnavailableError

INSTALL_HINT = 'install CuPy for your CUDA version: pip install "gpunn[cuda12]" or "gpunn[cuda13]"'


def import_cupy():
    """Import CuPy or raise DeviceUnavailableError naming the extra to install."""
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:
        raise DeviceUnavailableError(
            f"CUDA unavailable: CuPy is not installed ({exc}); {INSTALL_HINT}"
        ) from None


def device_count(cupy) -> int:
    """Number of CUDA devices, or DeviceUnavailableError when the driver/runtime cannot be used."""
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError, missing libcudart, driver too old, ...
        raise DeviceUnavailableError(
            f"CUDA unavailable: the CUDA driver/runtime cannot be used ({type(exc).__name__}: {exc}); "
            "check `nvidia-smi` and that the CuPy extra matches the driver's CUDA version"
        ) from None


def require_cuda(index: int):
    """Return the cupy module if cuda:`index` is usable, else raise DeviceUnavailableError."""
    cupy = import_cupy()
    count = device_count(cupy)
    if count == 0:
        raise DeviceUnavailableError("CUDA unavailable: the driver reports no CUDA device")
    if index >= count:
        raise DeviceUnavailableError(
            f"CUDA unavailable: cuda:{index} is out of range; this machine has {count} device(s): "
            f"cuda:0..cuda:{count - 1}"
        )
    return cupy


def cuda_status(index: int = 0) -> tuple[bool, str]:
    """(usable, reason) for cuda:`index`, never raising: used by `auto` and `gpunn info`."""
    try:
        cupy = require_cuda(index)
    except DeviceUnavailableError as exc:
        return False, str(exc).removeprefix("CUDA unavailable: ")
    return True, f"{device_count(cupy)} CUDA device(s) visible"
