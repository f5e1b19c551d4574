"""Arrays from other libraries (PyTorch, JAX, CuPy, ...) through DLPack: where one lives, and a host view.

Backend.from_dlpack is the door; this module only reads a DLPack array's device and views host memory.
"""

from __future__ import annotations

import numpy as np

from gpunn.errors import DeviceMismatchError

DLPACK_CPU, DLPACK_CUDA = 1, 2
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda-host", 4: "opencl", 7: "vulkan", 8: "metal", 10: "rocm"}


def is_foreign_array(array) -> bool:
    """True for a DLPack-capable array that is not a NumPy array (a tensor of another library)."""
    return not isinstance(array, np.ndarray) and hasattr(array, "__dlpack_device__")


def dlpack_device(array) -> tuple[int, int]:
    """(DLPack device type, device index) of `array`."""
    kind, index = array.__dlpack_device__()
    return int(kind), int(index)


def describe(array) -> str:
    """'a torch.Tensor on cuda:1', for error messages."""
    kind, index = dlpack_device(array)
    where = "cpu" if kind == DLPACK_CPU else f"{_DEVICE_NAMES.get(kind, f'DLPack device type {kind}')}:{index}"
    return f"a {type(array).__module__}.{type(array).__name__} on {where}"


def host_view(array) -> np.ndarray | None:
    """A NumPy view (no copy) of a host-resident DLPack array; None when it lives on a device."""
    if dlpack_device(array)[0] != DLPACK_CPU:
        return None
    try:
        return np.from_dlpack(array)
    except (BufferError, RuntimeError, TypeError, ValueError) as exc:
        raise DeviceMismatchError(
            f"{describe(array)} cannot be read through DLPack ({exc}); for a PyTorch tensor that requires "
            "grad, pass x.detach()"
        ) from None
