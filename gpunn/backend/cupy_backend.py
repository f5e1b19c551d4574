"""NVIDIA GPU backend: CuPy on one device, imported only when a cuda device is asked for.

On a GPU this model is launch-bound, so a few primitives are fused into single CuPy ElementwiseKernels
(the batch gather with its scaling, ReLU and its backward, softmax cross-entropy with its gradient and
correct-count, the whole-model optimizer updates on the flat buffers; sources in fused_kernels.py). The
reference versions in gpunn/backend/base.py stay the specification; tests/test_backend_parity.py compares
each override with them under the `gpu` marker.
"""

from __future__ import annotations

import numpy as np

from gpunn.backend.base import Backend, adam_bias_corrections
from gpunn.backend.cuda_probe import require_cuda
from gpunn.backend.fused_kernels import FUSED_KERNELS
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
        self._kernels.update((name, cupy.ElementwiseKernel(*spec)) for name, spec in FUSED_KERNELS.items())

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
    is_integral = NumpyBackend.is_integral

    # ---- fused kernels (one launch where the reference takes several) ---------------------------------
    def relu_backward(self, grad, y):
        self.check(grad, y)
        return self._kernels["relu_backward"](grad, y)

    writes_in_place = True

    def linear_backward(self, x, weight, grad, need_input_grad=True, out=None):
        """The reference's GEMMs, written straight into the flat gradient buffer's views when given."""
        self.check(x, weight, grad)
        cp = self.xp
        grad_weight, grad_bias = out if out is not None else (None, None)
        grad_weight = cp.matmul(x.T, grad, out=grad_weight)
        grad_bias = cp.sum(grad, axis=0, out=grad_bias)
        grad_input = cp.matmul(grad, weight.T) if need_input_grad else None
        return grad_input, grad_weight, grad_bias

    def relu(self, x):
        self.check(x)
        return self._kernels["relu"](x)

    def scale(self, array, factor):
        self.check(array)
        array *= factor
        return array

    def gather_images(self, images_u8, indices):
        self.check(images_u8, indices)
        width = images_u8.shape[1]
        with self._cuda:
            out = self.xp.empty((indices.shape[0], width), dtype=self.dtype)
        self._kernels["gather_images"](images_u8, indices, width, out)
        return out

    def add_to_totals(self, loss_sum, correct_sum, loss, correct, rows):
        self.check(loss_sum, correct_sum, loss, correct)
        self._kernels["add_to_totals"](loss, correct, np.float64(rows), loss_sum, correct_sum)
        return loss_sum, correct_sum

    def sgd_update(self, value, grad, lr, weight_decay=0.0):
        self.check(value, grad)
        t = value.dtype.type
        self._kernels["flat_sgd"](grad, t(lr), t(weight_decay), value)
        return value

    def momentum_update(self, value, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
        self.check(value, grad, velocity)
        t = value.dtype.type
        self._kernels["flat_momentum"](
            grad, t(lr), t(momentum), t(weight_decay), bool(nesterov), value, velocity
        )
        return value, velocity

    def adam_update(self, value, grad, m, v, lr, beta1, beta2, eps, step, weight_decay=0.0):
        self.check(value, grad, m, v)
        t = value.dtype.type
        m_hat_scale, v_hat_scale = adam_bias_corrections(beta1, beta2, step)
        self._kernels["flat_adam"](
            grad,
            *(t(s) for s in (lr, beta1, beta2, 1.0 - beta1, 1.0 - beta2, eps, m_hat_scale, v_hat_scale)),
            t(weight_decay),
            value,
            m,
            v,
        )
        return value, m, v

    def softmax_cross_entropy_counted(self, logits, targets, labels):
        """Loss, gradient and correct-count from one row kernel plus two sums (the reference takes ~12)."""
        self.check(logits, targets, labels)
        cp = self.xp
        rows, classes = logits.shape
        with self._cuda:
            grad = cp.empty_like(logits)
            loss_rows = cp.empty((rows,), dtype=logits.dtype)
            hits = cp.empty((rows,), dtype=cp.int64)
        self._kernels["softmax_xent_rows"](
            logits, targets, labels, classes, logits.dtype.type(rows), grad, loss_rows, hits
        )
        return cp.sum(loss_rows), grad, cp.sum(hits)

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
