"""NVIDIA GPU backend: CuPy on one device, imported only when a cuda device is asked for.

On a GPU this model is launch-bound, so a few primitives are fused into single CuPy ElementwiseKernels
(ReLU backward with its mask, the softmax-cross-entropy gradient, the optimizer updates). The reference
versions in gpunn/backend/base.py stay the specification; tests/test_backend_parity.py compares each
override with them under the `gpu` marker.
"""

from __future__ import annotations

import numpy as np

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
        self.dtype = np.dtype(dtype_name)  # CuPy arrays carry NumPy dtypes
        self._cuda = cupy.cuda.Device(index)
        self._cuda.use()
        self._kernels = _fused_kernels(cupy)

    def _is_mine(self, array) -> bool:
        return isinstance(array, self.array_type) and array.device.id == self.index

    def _upload(self, array, copy):
        with self._cuda:
            return self.xp.asarray(array)

    def _download(self, array):
        return self.xp.asnumpy(array)

    def sparse_from_host(self, matrix):
        """cupyx.scipy.sparse CSR on this GPU: the first layer's product stays sparse (cuSPARSE)."""
        from cupyx.scipy import sparse as device_sparse
        from scipy import sparse

        host = sparse.csr_matrix(matrix, dtype=self.dtype)
        with self._cuda:
            return device_sparse.csr_matrix(host)

    def sparse_linear(self, x, weight, bias):
        self.check(weight, bias)
        with self._cuda:
            return x @ weight + bias

    def sparse_weight_grad(self, x, grad):
        self.check(grad)
        with self._cuda:
            return x.T @ grad

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
    """The ElementwiseKernels, compiled by CuPy on first use and cached on disk."""
    return {
        "relu_backward": cupy.ElementwiseKernel(
            "T grad, T y", "T out", "out = y > (T)0 ? grad : (T)0", "gpunn_relu_backward"
        ),
        "sgd": cupy.ElementwiseKernel("T grad, T lr", "T value", "value = value - lr * grad", "gpunn_sgd"),
        "momentum": cupy.ElementwiseKernel(
            "T grad, T lr, T mu, T wd, bool nesterov",
            "T value, T velocity",
            """
            T g = grad + wd * value;
            T v = mu * velocity + g;
            velocity = v;
            value = value - lr * (nesterov ? g + mu * v : v);
            """,
            "gpunn_momentum",
        ),
        "softmax_xent": cupy.ElementwiseKernel(
            "T z, T row_max, T log_norm, T y, T m",
            "T grad, T loss_term",
            """
            T log_p = z - row_max - log_norm;
            grad = (exp(log_p) - y) / m;
            loss_term = -y * log_p;
            """,
            "gpunn_softmax_xent",
        ),
    }
