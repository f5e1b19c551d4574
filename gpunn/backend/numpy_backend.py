"""CPU backend: NumPy. Overrides create arrays without the `device=` keyword (NumPy 1.26 lacks it)."""

from __future__ import annotations

import numpy as np

from gpunn.backend.base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    device = "cpu"
    array_type = (np.ndarray, np.generic)  # reductions return NumPy scalars

    def __init__(self, dtype_name: str = "float32"):
        super().__init__(np, dtype_name)
        self.dtype = np.dtype(dtype_name)

    def _upload(self, array):
        return array

    def _download(self, array):
        return array

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype=dtype or self.dtype)

    def astype(self, array, dtype):
        return array.astype(dtype, copy=False)

    def arange(self, n: int):
        return np.arange(n)

    def concat(self, arrays):
        self.check(*arrays)
        return np.concatenate(arrays)
