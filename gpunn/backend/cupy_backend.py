"""NVIDIA GPU backend: CuPy on one device, imported only when a cuda device is asked for.

Every public method, and every function reached through `backend.xp`, first makes this backend's device
current in the calling thread: a cuda:1 backend never disturbs a cuda:0 one, and works from any thread.

On a GPU this model is launch-bound, so a few primitives are fused into single CuPy ElementwiseKernels
(the batch gather with its scaling and labels, the bias add with its ReLU, ReLU and its backward, softmax cross-entropy
with its gradient, correct-count, epoch totals and column sums, the whole-model optimizer updates on the flat buffers; sources in kernels.py). The
reference versions in gpunn/backend/base.py stay the specification; tests/test_backend_parity.py compares
each override with them under the `gpu` marker.
"""

from __future__ import annotations

import functools
import inspect
import threading

import numpy as np

from gpunn.backend.base import Backend, adam_bias_corrections
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
        self._tickets = _StreamTickets(cupy)  # softmax_cross_entropy_totals' zeroed counters, one per stream

    def _is_mine(self, array) -> bool:
        return isinstance(array, self.array_type) and array.device.id == self.index

    def _upload(self, array, copy):
        """copy=True is always a new device array; copy=False lets CuPy use the host memory in place where
        it can (CUPY_ENABLE_UMP=1 on a system with HMM/ATS: cupy/_core/core.pyx _try_skip_h2d_copy), which
        the caller allows only for data it never writes."""
        return self.xp.array(array, copy=True) if copy else self.xp.asarray(array)

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

    def sparse_from_host(self, matrix):
        """cupyx.scipy.sparse CSR on this GPU: the first layer's product stays sparse (cuSPARSE)."""
        from cupyx.scipy import sparse as device_sparse
        from scipy import sparse

        host = sparse.csr_matrix(matrix, dtype=self.dtype)
        with self._cuda:
            return device_sparse.csr_matrix(host)

    def is_sparse(self, x) -> bool:
        """A cupyx.scipy.sparse matrix (what sparse_from_host makes); checked by module, so a dense CuPy
        array never imports cupyx."""
        if not type(x).__module__.startswith("cupyx.scipy.sparse"):
            return False
        from cupyx.scipy import sparse as device_sparse

        return device_sparse.issparse(x)

    def sparse_linear(self, x, weight, bias):
        self.check(weight, bias)
        with self._cuda:
            return x @ weight + bias

    def sparse_weight_grad(self, x, grad):
        self.check(grad)
        with self._cuda:
            return x.T @ grad

    reads_are_cheap = False  # a read-back waits for the whole queue of launches

    def allreduce(self, comm, rank, size):
        """NCCL straight between GPUs' memory; the NCCL id travels over `comm`."""
        from gpunn.backend.collectives import NcclAllreduce

        return NcclAllreduce(self, rank, size, comm)

    def device_context(self):
        """`with backend.device_context():` runs CuPy calls that are not backend methods on this GPU."""
        return self._cuda

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

    writes_in_place = True

    column_sums = NumpyBackend.column_sums

    def linear_backward(self, x, weight, grad, need_input_grad=True, out=None, bias_grad=None):
        """The reference's GEMMs, written straight into the flat gradient buffer's views when given (a given
        bias_grad, the loss kernel's column sums, costs no launch)."""
        self.check(x, weight, grad)
        cp = self.xp
        grad_weight, grad_bias = out if out is not None else (None, None)
        grad_weight = cp.matmul(x.T, grad, out=grad_weight)
        grad_bias = self.column_sums(grad, out=grad_bias) if bias_grad is None else bias_grad
        grad_input = cp.matmul(grad, weight.T) if need_input_grad else None
        return grad_input, grad_weight, grad_bias

    def relu(self, x):
        self.check(x)
        return self._kernels["relu"](x)

    def relu_linear_backward(self, x, weight, grad, y, need_input_grad=True, out=None):
        """The ReLU mask and the bias gradient in one launch, then the two GEMMs (into `out` when given)."""
        self.check(x, weight, grad, y)
        cp = self.xp
        grad_weight, grad_bias = out if out is not None else (None, None)
        with self._cuda:
            masked = cp.empty_like(grad)
            if grad_bias is None:
                grad_bias = cp.empty((grad.shape[1],), dtype=grad.dtype)
        self._kernels["relu_backward_bias"](grad, y, grad.shape[0], masked, grad_bias)
        grad_weight = cp.matmul(x.T, masked, out=grad_weight)
        grad_input = cp.matmul(masked, weight.T) if need_input_grad else None
        return grad_input, grad_weight, grad_bias

    def linear_relu(self, x, weight, bias):
        """One GEMM, then the bias add and the ReLU in place on its output: two launches, no temporaries."""
        self.check(x, weight, bias)
        z = self.xp.matmul(x, weight)
        self._kernels["bias_relu"](bias, bias.shape[0], z)
        return z

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

    def gather_batch(self, images_u8, labels, indices):
        self.check(images_u8, labels, indices)
        width = images_u8.shape[1]
        with self._cuda:
            x = self.xp.empty((indices.shape[0], width), dtype=self.dtype)
            batch_labels = self.xp.empty((indices.shape[0],), dtype=labels.dtype)
        self._kernels["gather_batch"](images_u8, indices, labels, width, x, batch_labels)
        return x, batch_labels

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
        """Loss, gradient and correct-count from one row kernel and one totals kernel (the reference takes ~12)."""
        self.check(logits, targets, labels)
        cp = self.xp
        rows, classes = logits.shape
        with self._cuda:
            grad = cp.empty_like(logits)
            loss_rows = cp.empty((rows,), dtype=logits.dtype)
            hits = cp.empty((rows,), dtype=cp.int64)
            loss = cp.empty((), dtype=logits.dtype)
            correct = cp.empty((), dtype=cp.int64)
        self._kernels["softmax_xent_rows"](
            logits, targets, labels, classes, logits.dtype.type(rows), grad, loss_rows, hits
        )
        self._kernels["batch_totals"](loss_rows, hits, rows, loss, correct, size=1)
        return loss, grad, correct

    def softmax_cross_entropy_totals(self, logits, labels, loss_sum, correct_sum, *, column_sums_out=None):
        """Loss, gradient, correct count, the epoch's new totals and the gradient's column sums (into
        column_sums_out when given) from one launch (the reference takes ~20)."""
        self.check(logits, labels, loss_sum, correct_sum)
        cp = self.xp
        rows, classes = logits.shape
        with self._cuda:
            ticket = self._tickets.for_current_stream()
            grad = cp.empty_like(logits)
            loss_rows = cp.empty((rows,), dtype=logits.dtype)
            hits = cp.empty((rows,), dtype=cp.int64)
            loss = cp.empty((), dtype=logits.dtype)
            correct = cp.empty((), dtype=cp.int64)
            new_loss_sum = cp.empty((), dtype=cp.float64)
            new_correct_sum = cp.empty((), dtype=cp.int64)
            column_sums = column_sums_out
            if column_sums is None:
                column_sums = cp.empty((classes,), dtype=logits.dtype)
        self._kernels["softmax_xent_totals"](
            logits,
            labels,
            classes,
            logits.dtype.type(rows),
            loss_sum,
            correct_sum,
            grad,
            loss_rows,
            hits,
            ticket,
            loss,
            correct,
            new_loss_sum,
            new_correct_sum,
            column_sums,
            size=rows,
        )
        return loss, grad, correct, new_loss_sum, new_correct_sum, column_sums

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


class _StreamTickets:
    """The zeroed uint32 counter of softmax_cross_entropy_totals' "last thread sums" pattern, one per stream.

    Launches on one stream run one after another, and each launch's last thread sets the counter back to
    zero, so a stream can reuse its counter with no memset launch; launches on two streams (or on two
    threads' per-thread default streams) may run at once, so they never share one (a shared counter
    interleaves their tickets and no thread of either ever sees itself last).
    """

    # CUDA's handle of the calling thread's own default stream (cudaStreamPerThread: CuPy's Stream.ptds,
    # cupy_backends/cuda/api/runtime.pxd streamPerThread = 2): the same pointer names a stream per thread
    PER_THREAD_DEFAULT_STREAM = 2

    def __init__(self, cupy):
        self._cupy = cupy
        self._tickets: dict = {}
        self._lock = threading.Lock()

    def for_current_stream(self):
        """The counter for launches on the calling thread's current stream (of the current device)."""
        ptr = self._cupy.cuda.get_current_stream().ptr
        key = (ptr, threading.get_ident() if ptr == self.PER_THREAD_DEFAULT_STREAM else None)
        with self._lock:
            ticket = self._tickets.get(key)
            if ticket is None:
                ticket = self._tickets[key] = self._cupy.zeros((1,), dtype=self._cupy.uint32)
        return ticket


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
    if isinstance(inspect.getattr_static(CupyBackend, _name), (staticmethod, classmethod)):
        continue  # no self to find the device on; they run inside the primitives that call them
    if not _name.startswith("_") and callable(getattr(CupyBackend, _name)):
        setattr(CupyBackend, _name, _on_own_device(getattr(CupyBackend, _name)))
