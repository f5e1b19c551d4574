"""CPU backend: NumPy, with a few primitives overridden by faster host versions.

Each override is checked against the reference in gpunn/backend/base.py by tests/test_backend_parity.py.
Creation functions avoid the `device=` keyword (NumPy 1.26 lacks it).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import numpy as np
from scipy import sparse

from gpunn.backend.base import Backend, adam_bias_corrections

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 256 * 2**20
_allocator_tuned = False
_scratch = threading.local()  # per thread: two threads updating two models never share a temporary


def tune_host_allocator() -> bool:
    """Let glibc keep freed blocks (up to 256 MiB) in the heap instead of unmapping them at every free.

    A training step frees and re-allocates the same few 0.1-0.5 MB arrays hundreds of times a second; by
    default each one is a fresh mmap that page-faults on first touch. On the 2-core CI machine that made a
    (128x784) GEMM output 2x slower and a Nesterov update of the 784x128 weight 7x slower (measured with
    and without, in micro-benchmarks of those operations). The allocator is the whole process's, so the
    library never calls this (a fit would keep 400 MiB its user freed resident): the `gpunn` command does,
    and a program of your own may opt in by calling it. Set GPUNN_MALLOC_TUNING=0 to opt the command out.
    """
    global _allocator_tuned
    if (
        _allocator_tuned
        or os.environ.get("GPUNN_MALLOC_TUNING", "1") == "0"
        or not sys.platform.startswith("linux")
    ):
        return _allocator_tuned
    try:
        libc = ctypes.CDLL("libc.so.6")
        _allocator_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * _KEEP_BYTES)
        )
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        _allocator_tuned = False
    return _allocator_tuned


def scratch_like(array) -> np.ndarray:
    """A temporary of `array`'s shape and dtype that this thread reuses from call to call.

    An update's temporaries are as large as the model (437 KB for 784-128-64-10): allocated afresh they are
    cold cache lines each step, and past glibc's mmap threshold fresh pages too. Only a primitive's own
    intermediates live here, never what it returns, so no caller can hold one while the next call rewrites it.
    """
    key = (array.shape, array.dtype)
    buffers = _scratch.__dict__.setdefault("buffers", {})
    buffer = buffers.get(key)
    if buffer is None:
        if len(buffers) > 8:  # a few models' worth: a thread that trains many shapes keeps only recent ones
            buffers.clear()
        buffer = buffers[key] = np.empty(array.shape, array.dtype)
    return buffer


class NumpyBackend(Backend):
    name = "numpy"
    device = "cpu"
    array_type = (np.ndarray, np.generic)  # reductions return NumPy scalars

    def __init__(self, dtype_name: str = "float32"):
        super().__init__(np, dtype_name)
        self.dtype = np.dtype(dtype_name)  # the allocator is the process's: only the CLI tunes it

    def _upload(self, array, copy):
        return array.copy() if copy else array

    def _download(self, array):
        return np.array(array, copy=True)  # a host copy, as on every other device

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype=dtype or self.dtype)

    def astype(self, array, dtype):
        return array.astype(dtype, copy=False)

    def arange(self, n: int):
        return np.arange(n)

    def is_integral(self, array) -> bool:
        return np.issubdtype(array.dtype, np.integer)  # np.isdtype needs NumPy 2

    def concat(self, arrays):
        self.check(*arrays)
        return np.concatenate(arrays)

    # ---- sparse input: SciPy's CSR products, never densified ----------------------------------------------
    def sparse_from_host(self, matrix):
        return sparse.csr_matrix(matrix, dtype=self.dtype)

    def is_sparse(self, x) -> bool:
        return not isinstance(x, np.ndarray) and sparse.issparse(x)  # every step asks of each layer's input

    def sparse_linear(self, x, weight, bias):
        self.check(weight, bias)
        out = np.asarray(x @ weight)
        out += bias
        return out

    def sparse_weight_grad(self, x, grad):
        self.check(grad)
        return np.asarray(x.T @ grad)

    # ---- faster host versions of reference primitives --------------------------------------------------
    def linear(self, x, weight, bias):
        self.check(x, weight, bias)
        out = np.matmul(x, weight)
        out += bias  # in place on the fresh GEMM output: one pass and no temporary
        return out

    def linear_relu(self, x, weight, bias):
        """linear, then the ReLU in place on the fresh GEMM output: maximum(z, 0), the reference's values,
        with no zeros array and no second output."""
        out = self.linear(x, weight, bias)
        return np.maximum(out, 0, out=out)

    def gather_images(self, images_u8, indices):
        """The gathered uint8 rows cast and divided by 255 in one pass (dtype(pixel) / dtype(255), the
        reference's numbers), without the float copy that astype then `/` makes between them."""
        self.check(images_u8, indices)
        return np.divide(np.take(images_u8, indices, axis=0), self.dtype.type(255.0), dtype=self.dtype)

    def softmax_cross_entropy_totals(self, logits, labels, loss_sum, correct_sum, *, column_sums_out=None):
        """The reference's numbers, bit for bit, in about half its NumPy calls (each costs microseconds on
        a 128x10 batch): the row maxima are read at the argmax that the correct count needs anyway, sums
        call add.reduce directly, and each row's label entry is indexed instead of one-hot rows built and
        multiplied (the gradient's -1 lands there; the loss sums an array that is zero elsewhere, in the
        reference's order). A label outside [0, classes) indexes nothing: a zero target row, never correct.
        """
        self.check(logits, labels, loss_sum, correct_sum)
        rows, classes = logits.shape
        best = np.argmax(logits, axis=1)
        every_row = np.arange(rows)
        shifted = logits - logits[every_row, best][:, None]  # the row's max (NaN where the row has one)
        log_norm = np.add.reduce(np.exp(shifted), axis=1, keepdims=True)
        log_probs = np.subtract(shifted, np.log(log_norm, out=log_norm), out=shifted)
        in_range = labels.astype(np.uint64) < classes  # a negative label wraps past every class
        hits = (every_row, labels) if in_range.all() else (every_row[in_range], labels[in_range])
        grad = np.exp(log_probs)
        grad[hits] -= 1.0
        grad /= rows
        terms = np.zeros_like(log_probs)
        terms[hits] = log_probs[hits] / rows
        loss = -np.add.reduce(terms, axis=None)
        correct = np.int64(np.count_nonzero(best == labels))
        totals = self.add_to_totals(loss_sum, correct_sum, loss, correct, rows)
        return (loss, grad, correct, *totals, np.add.reduce(grad, axis=0, out=column_sums_out))

    def relu_backward(self, grad, y):
        """grad * (y > 0): a multiply by the mask, 5x faster than `where` here (-0.0 may replace 0.0)."""
        self.check(grad, y)
        return grad * (y > 0)

    # ---- in place on the model's flat buffers: one NumPy pass per operation for the whole model ----------
    writes_in_place = True

    def linear_backward(self, x, weight, grad, need_input_grad=True, out=None, bias_grad=None):
        """The reference's GEMMs, written straight into the flat gradient buffer's views when given."""
        self.check(x, weight, grad)
        grad_weight, grad_bias = out if out is not None else (None, None)
        grad_weight = np.matmul(x.T, grad, out=grad_weight)
        grad_bias = self.column_sums(grad, out=grad_bias) if bias_grad is None else bias_grad
        grad_input = np.matmul(grad, weight.T) if need_input_grad else None
        return grad_input, grad_weight, grad_bias

    def column_sums(self, grad, out=None):
        """The reference's sum, written into `out` when given (also CuPy's: self.xp is the array module)."""
        self.check(grad)
        return self.xp.sum(grad, axis=0, out=out)

    def scale(self, array, factor):
        self.check(array)
        array *= factor
        return array

    def sgd_update(self, value, grad, lr, weight_decay=0.0):
        self.check(value, grad)
        step = np.multiply(self.decayed(grad, value, weight_decay), lr, out=scratch_like(value))
        value -= step  # in place: the optimizer owns the parameter buffer
        return value

    def momentum_update(self, value, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
        """In place on value and velocity; the same operations in the same order as the reference."""
        self.check(value, grad, velocity)
        grad = self.decayed(grad, value, weight_decay)
        velocity *= momentum
        velocity += grad
        direction = scratch_like(value)
        if nesterov:
            np.multiply(velocity, momentum, out=direction)
            direction += grad
            direction *= lr
        else:
            np.multiply(velocity, lr, out=direction)
        value -= direction
        return value, velocity

    def adam_update(self, value, grad, m, v, lr, beta1, beta2, eps, step, weight_decay=0.0):
        """In place on value, m and v; the reference's operations in its order (two temporaries)."""
        self.check(value, grad, m, v)
        grad = self.decayed(grad, value, weight_decay)
        m_hat_scale, v_hat_scale = adam_bias_corrections(beta1, beta2, step)
        m *= beta1
        term = (1.0 - beta1) * grad
        m += term
        v *= beta2
        np.multiply((1.0 - beta2), grad, out=term)
        term *= grad
        v += term
        np.multiply(v, v_hat_scale, out=term)
        np.sqrt(term, out=term)
        term += eps
        direction = m * m_hat_scale
        direction *= lr
        direction /= term
        value -= direction
        return value, m, v
