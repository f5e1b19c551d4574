"""NVIDIA GPU backend: CuPy on one device, imported only when a cuda device is asked for."""

from __future__ import annotations

from gpunn.backend.base import Backend
from gpunn.backend.cuda_probe import require_cuda
from gpunn.backend.numpy_backend import NumpyBackend


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, index: int = 0, dtype_name: str = "float32"):
        cupy = require_cuda(index)
        super().__init__(cupy, dtype_name)
        self.index = index
        self.device = f"cuda:{index}"
        self.array_type = cupy.ndarray
        self.dtype = cupy.dtype(dtype_name)
        self._cuda = cupy.cuda.Device(index)
        self._cuda.use()

    def _is_mine(self, array) -> bool:
        return isinstance(array, self.array_type) and array.device.id == self.index

    def _upload(self, array, copy):
        with self._cuda:
            return self.xp.asarray(array)

    def _download(self, array):
        return self.xp.asnumpy(array)

    def synchronize(self) -> None:
        self._cuda.synchronize()

    def memory_info(self) -> dict[str, int | str]:
        with self._cuda:
            _free, total = self.xp.cuda.runtime.memGetInfo()
        pool = self.xp.get_default_memory_pool()
        return {"kind": "cuda memory pool", "used_bytes": int(pool.used_bytes()), "total_bytes": int(total)}

    def zeros(self, shape, dtype=None):
        with self._cuda:
            return self.xp.zeros(shape, dtype=dtype or self.dtype)

    def arange(self, n: int):
        with self._cuda:
            return self.xp.arange(n)

    def concat(self, arrays):
        self.check(*arrays)
        return self.xp.concatenate(arrays)

    astype = NumpyBackend.astype
