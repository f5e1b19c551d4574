"""NVIDIA GPU backend: CuPy on one device, imported only when a cuda device is asked for.

Every public method, and every function reached through `backend.xp`, first makes this backend's device
current in the calling thread: a cuda:1 backend never disturbs a cuda:0 one, and works from any thread.

On a GPU this model is launch-bound, so a few primitives are fused into single CuPy ElementwiseKernels
(ReLU backward with its mask, the softmax-cross-entropy gradient, the optimizer updates). The reference
versions in gpunn/backend/base.py stay the specification; tests/test_backend_parity.py compares each
override with them under the `gpu` marker.
"""

from __future__ import annotations

import functools

import numpy as np

from gpunn.backend.base import Backend
from gpunn.backend.cuda_probe import require_cuda
from gpunn.backend.kernels import KERNELS
from gpunn.backend.numpy_backend import NumpyBackend


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, index: int = 0, dtype_name: str = "float32"):
        cupy = require_cuda(index)
        self._cuda = cupy.cuda.Device(index)
        super().__init__(_OnDevice(cupy, self._cuda), dtype_name)
        self.index = index
        self.device = f"cuda:{index}"
        self.array_type = cupy.ndarray
        self.dtype = np.dtype(dtype_name)  # CuPy arrays carry NumPy dtypes
        self._kernels = _fused_kernels(cupy)

    def _is_mine(self, array) -> bool:
        return isinstance(array, self.array_type) and array.device.id == self.index

    def _upload(self, array, copy):
        return self.xp.asarray(array)

    def _import_device_dlpack(self, array):
        """A CUDA DLPack array on this GPU: imported without a copy (floats cast on the device)."""
        from gpunn.backend import dlpack

        if dlpack.dlpack_device(array) != (dlpack.DLPACK_CUDA, self.index):
            return super()._import_device_dlpack(array)
        with self._cuda:
            imported = self.xp.from_dlpack(array)
            return imported.astype(self.dtype, copy=False) if imported.dtype.kind == "f" else imported

    def _download(self, array):
        return self.xp.asnumpy(array)

    def synchronize(self) -> None:
        self._cuda.synchronize()

    def memory_info(self) -> dict[str, int | str]:
        """This device's CuPy memory pool: bytes held by live arrays, and all bytes the pool holds
        (used + cached free blocks), as cupy.get_default_memory_pool() reports for the current device."""
        pool = self.xp.get_default_memory_pool()  # per-device pools: the proxy made our device current
        return {
            "kind": f"cuda memory pool ({self.device})",
            "used_bytes": int(pool.used_bytes()),
            "total_bytes": int(pool.total_bytes()),
        }

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=dtype or self.dtype)

    def arange(self, n: int):
        return self.xp.arange(n)

    def concat(self, arrays):
        self.check(*arrays)
        return self.xp.concatenate(arrays)

    astype = NumpyBackend.astype
    is_integral = NumpyBackend.is_integral

    # ---- fused kernels (one launch where the reference takes several) ---------------------------------
    def relu_backward(self, grad, y):
        self.check(grad, y)
        return self._kernels["relu_backward"](grad, y)

    def sgd_update(self, param, grad, lr: float):
        self.check(param, grad)
        self._kernels["sgd"](grad, param.dtype.type(lr), param)
        return param

    def momentum_update(self, value, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
        self.check(value, grad, velocity)
        t = value.dtype.type
        self._kernels["momentum"](grad, t(lr), t(momentum), t(weight_decay), bool(nesterov), value, velocity)
        return value, velocity

    def softmax_cross_entropy(self, logits, targets):
        self.check(logits, targets)
        cp = self.xp
        row_max = cp.max(logits, axis=1, keepdims=True)
        log_norm = cp.log(cp.sum(cp.exp(logits - row_max), axis=1, keepdims=True))
        m = logits.shape[0]
        grad, loss_terms = self._kernels["softmax_xent"](
            logits, row_max, log_norm, targets, logits.dtype.type(m)
        )
        return cp.sum(loss_terms / m), grad


def _fused_kernels(cupy) -> dict:
    """The ElementwiseKernels of gpunn/backend/kernels.py, compiled by CuPy on first use and cached on disk."""
    return {key: source.build(cupy) for key, source in KERNELS.items()}


class _OnDevice:
    """The cupy namespace, but each function call first makes the backend's device current.

    NN code calls backend.xp.where(...) and friends directly; through this proxy those launches run on the
    backend's device whatever device the calling thread had current. Classes (ndarray, float64) and
    submodules pass through unchanged.
    """

    def __init__(self, cupy, device):
        self._cupy, self._device = cupy, device

    def __getattr__(self, name):
        value = getattr(self._cupy, name)
        if not callable(value) or isinstance(value, type):
            return value
        device = self._device

        @functools.wraps(value)
        def on_device(*args, **kwargs):
            device.use()
            return value(*args, **kwargs)

        setattr(self, name, on_device)  # built once per name: later lookups skip __getattr__
        return on_device


def _on_own_device(method):
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        self._cuda.use()
        return method(self, *args, **kwargs)

    return run


# Every primitive makes this backend's device current in the calling thread before it runs (a thread
# starts on device 0, and another backend may have switched it): then its launches, and the array
# arithmetic the NN code does on its results, happen where the arrays live.
for _name in dir(CupyBackend):
    if not _name.startswith("_") and callable(getattr(CupyBackend, _name)):
        setattr(CupyBackend, _name, _on_own_device(getattr(CupyBackend, _name)))
