"""What a reader outside CuPy (a CUDA-aware MPI, NCCL, another library given __cuda_array_interface__) finds
at a device array's pointer right now, without waiting for any stream. On the stand-in device memory is
host memory, so tests can read and write it at the address, as such a library does on a GPU; never on a
real GPU (the address is not host memory there)."""

from __future__ import annotations

import ctypes

import numpy as np


def at_pointer(array) -> np.ndarray:
    """A writable NumPy view of the memory behind `array` (C-contiguous), through its CUDA array interface."""
    interface = array.__cuda_array_interface__
    if interface["strides"] is not None:
        raise ValueError("at_pointer reads C-contiguous arrays only")
    dtype = np.dtype(interface["typestr"])
    count = int(np.prod(interface["shape"]))
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(interface["data"][0])
    return np.frombuffer(raw, dtype=dtype).reshape(interface["shape"])
