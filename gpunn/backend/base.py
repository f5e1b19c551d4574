"""The backend: the one object through which NN code touches arrays.

Generic primitives here are written against the Array API subset and are the *reference* path. A backend
subclass may override a primitive with a faster device-specific version (in-place NumPy, a fused CuPy
kernel); tests/test_backend_parity.py compares every overridden NN primitive with the reference below, and
fails when a backend overrides one it has no inputs for. Creation and conversion helpers (zeros, astype,
concat, ...) have no reference to match: the tests that use them check them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpunn.backend import dlpack
from gpunn.backend.counter_rng import random_bits, stream_key
from gpunn.errors import DeviceMismatchError, DTypeMismatchError
from gpunn.procinfo import rss_bytes, total_memory_bytes


class Backend:
    """Everything device-specific: the array namespace, moving data, and the NN primitives."""

    name: str  # "numpy", "cupy", "strict"
    device: str  # "cpu", "cuda:0", "strict"
    array_type: type

    def __init__(self, xp: Any, dtype_name: str, xp_device: Any = None):
        self.xp = xp
        self.dtype_name = dtype_name
        self.dtype = getattr(xp, dtype_name)
        self.xp_device = xp_device

    def __repr__(self) -> str:
        return f"<{type(self).__name__} device={self.device} dtype={self.dtype_name}>"

    # ---- crossing the host/device line: the only two doors --------------------------------------------
    def from_host(self, array: np.ndarray, dtype: str | None = None, copy: bool = True):
        """Copy a NumPy array to this device; floating arrays take the backend dtype unless told.

        copy=False lets a backend share read-only data (a dataset) instead of duplicating it: the NumPy
        backend does, CuPy does where it can map host memory (CUPY_ENABLE_UMP=1); copy=True always copies.
        """
        if not isinstance(array, np.ndarray):
            raise DeviceMismatchError(
                f"from_host expects a NumPy array, got {type(array).__module__}.{type(array).__name__}; "
                "arrays already on a device move with their own backend's to_host() first"
            )
        original = array
        target = dtype or (self.dtype_name if array.dtype.kind == "f" else None)
        if target is not None:
            array = array.astype(target, copy=False)
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would turn 0-d into 1-d)
            array = array.copy(order="C")
        return self._upload(array, copy=copy and array is original)

    def to_host(self, array) -> np.ndarray:
        """Copy a device array back to a NumPy array (a synchronisation point on a GPU)."""
        self.check(array)
        return self._download(array)

    def from_dlpack(self, array):
        """The door for arrays of other libraries (PyTorch, JAX, CuPy, ...): any DLPack-capable array.

        An array on this backend's own device is imported as it is, dtype included, without a copy (a CuPy
        array or a torch CUDA tensor on the same GPU never visits the host); a host array is viewed without a
        copy and moved like from_host (floats take the backend dtype); an array on another device is refused
        with a DeviceMismatchError naming both devices, as every primitive refuses one.
        """
        if self._is_mine(array):
            return array
        if isinstance(array, np.ndarray):
            return self.from_host(array)
        if not dlpack.is_foreign_array(array):
            raise DeviceMismatchError(
                f"from_dlpack expects an array with __dlpack__ (NumPy, PyTorch, JAX, CuPy, ...), got "
                f"{type(array).__module__}.{type(array).__name__}"
            )
        host = dlpack.host_view(array)
        return self.from_host(host) if host is not None else self._import_device_dlpack(array)

    def _import_device_dlpack(self, array):
        """A device-resident DLPack array: only a GPU backend on the same device can take it."""
        raise DeviceMismatchError(
            f"{dlpack.describe(array)} was passed to the {self.device} backend, which refuses implicit "
            "transfers: move it to the host first (x.cpu() for a PyTorch tensor) or use a backend on its device"
        )

    def to_scalar(self, array) -> float:
        return float(self.to_host(array))

    def check(self, *arrays) -> None:
        """Raise DeviceMismatchError, naming the fix, unless every argument is an array of this device."""
        for array in arrays:
            if not self._is_mine(array):
                raise DeviceMismatchError(self._mismatch_message(array))

    def check_dtype(self, *arrays) -> None:
        for array in arrays:
            if array.dtype != self.dtype:
                raise DTypeMismatchError(
                    f"array of dtype {array.dtype} given to a {self.dtype_name} backend; "
                    f"mixed dtypes are refused: convert with backend.astype(x, backend.dtype)"
                )

    def _is_mine(self, array) -> bool:
        return isinstance(array, self.array_type)

    def _mismatch_message(self, array) -> str:
        kind = f"{type(array).__module__}.{type(array).__name__}"
        if isinstance(array, np.ndarray):
            return (
                f"a host NumPy array was passed to the {self.device} backend, which refuses implicit "
                "transfers: move it first with backend.from_host(x)"
            )
        return (
            f"a {kind} was passed to the {self.device} backend; bring it to the host with its own "
            "backend's to_host(x), then backend.from_host(...) to move it here"
        )

    def _upload(self, array: np.ndarray, copy: bool):
        raise NotImplementedError

    def _download(self, array) -> np.ndarray:
        raise NotImplementedError

    def sparse_from_host(self, matrix):
        """A scipy.sparse matrix onto the device; this reference densifies it, NumPy and CuPy keep it sparse."""
        return self.from_host(matrix.toarray())

    def is_sparse(self, x) -> bool:
        """Whether x is a sparse matrix from sparse_from_host (this reference densifies, so never)."""
        return False

    def sparse_linear(self, x, weight, bias):
        """x @ weight + bias for an x from sparse_from_host (a sparse product where the device has one)."""
        return self.linear(x, weight, bias)

    def sparse_weight_grad(self, x, grad):
        """x.T @ grad for an x from sparse_from_host: the first layer's weight gradient."""
        self.check(x, grad)
        return self.xp.matmul(x.T, grad)

    # ---- device bookkeeping ------------------------------------------------------------------------
    reads_are_cheap = True  # reading a value back costs no synchronisation worth avoiding (host memory)

    def allreduce(self, comm, rank: int, size: int):
        """The object that sums this device's flat buffers over the ranks of `comm` (MPI here)."""
        from gpunn.backend.collectives import MpiAllreduce

        return MpiAllreduce(comm, self)

    def synchronize(self) -> None:
        """Wait until queued device work is done (a no-op on the host)."""

    def memory_info(self) -> dict[str, int | str]:
        """Memory used by this process: the resident set on the host; GPU backends report the pool."""
        return {"kind": "host rss", "used_bytes": rss_bytes(), "total_bytes": total_memory_bytes()}

    # ---- creation and conversion -------------------------------------------------------------------
    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=dtype or self.dtype, device=self.xp_device)

    def astype(self, array, dtype):
        return self.xp.astype(array, dtype)

    def arange(self, n: int):
        return self.xp.arange(n, device=self.xp_device)

    def concat(self, arrays):
        self.check(*arrays)
        return self.xp.concat(arrays)

    def is_integral(self, array) -> bool:
        return self.xp.isdtype(array.dtype, "integral")

    def one_hot(self, labels, classes: int):
        """(N,) integer labels -> (N, classes) one-hot in the backend dtype."""
        self.check(labels)
        hits = self.xp.reshape(labels, (-1, 1)) == self.xp.reshape(self.arange(classes), (1, -1))
        return self.astype(hits, self.dtype)

    def scale_images(self, images_u8):
        """uint8 pixels -> floats in [0, 1]: the one place images are scaled (x / 255)."""
        self.check(images_u8)
        return self.astype(images_u8, self.dtype) / 255.0

    def take_rows(self, array, indices):
        """array[indices] along the first axis (a gather that stays on the device)."""
        self.check(array, indices)
        return self.xp.take(array, indices, axis=0)

    def gather_images(self, images_u8, indices):
        """scale_images(take_rows(images_u8, indices)): a training batch's inputs from the uploaded set."""
        return self.scale_images(self.take_rows(images_u8, indices))

    def gather_batch(self, images_u8, labels, indices):
        """(gather_images(images_u8, indices), take_rows(labels, indices)): a training batch's inputs and labels."""
        return self.gather_images(images_u8, indices), self.take_rows(labels, indices)

    # ---- NN primitives (reference versions) --------------------------------------------------------
    def linear(self, x, weight, bias):
        """x @ weight + bias with weight laid out (in, out): batch-first, no transpose in the forward GEMM."""
        self.check(x, weight, bias)
        return self.xp.matmul(x, weight) + bias

    def linear_relu(self, x, weight, bias):
        """relu(linear(x, weight, bias)): a Dense layer followed by a ReLU, which a GPU does in one epilogue."""
        return self.relu(self.linear(x, weight, bias))

    def linear_backward(self, x, weight, grad, need_input_grad: bool = True, out=None, bias_grad=None):
        """Gradients of x @ W + b: (dx or None, dW = x.T @ grad, db = sum(grad)).

        out: optional (dW, db) destinations (views of the model's flat gradient buffer) that a backend which
        writes in place fills and returns; the reference, like any functional backend, returns new arrays.
        bias_grad: db when the caller already has it (the loss summed its gradient's columns): returned as
        it is, not computed again.
        """
        self.check(x, weight, grad)
        grad_weight = self.xp.matmul(x.T, grad)
        grad_bias = self.column_sums(grad) if bias_grad is None else bias_grad
        grad_input = self.xp.matmul(grad, weight.T) if need_input_grad else None
        return grad_input, grad_weight, grad_bias

    def relu_linear_backward(self, x, weight, grad, y, need_input_grad: bool = True, out=None):
        """Backward of relu(linear(x, weight, b)) whose output was y: linear_backward of the masked gradient."""
        return self.linear_backward(x, weight, self.relu_backward(grad, y), need_input_grad, out)

    def relu(self, x):
        self.check(x)
        return self.xp.maximum(x, self.xp.zeros_like(x))

    def relu_backward(self, grad, y):
        """grad masked where the ReLU output y is zero."""
        self.check(grad, y)
        return self.xp.where(y > 0, grad, self.xp.zeros_like(grad))

    def softmax(self, z):
        self.check(z)
        shifted = z - self.xp.max(z, axis=1, keepdims=True)
        e = self.xp.exp(shifted)
        return e / self.xp.sum(e, axis=1, keepdims=True)

    def softmax_cross_entropy(self, logits, targets):
        """Mean cross-entropy of softmax(logits) vs one-hot targets, and its gradient (p - y) / m.

        Returned loss is a 0-d device array, so an epoch can add losses up without synchronising.
        """
        self.check(logits, targets)
        xp = self.xp
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        log_norm = xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        log_probs = shifted - log_norm
        m = logits.shape[0]
        loss = -xp.sum(targets * log_probs / m)  # dividing the array keeps the dtype on NumPy 1.x too
        grad = (xp.exp(log_probs) - targets) / m
        return loss, grad

    # ---- whole-model optimizer updates on flat buffers (a backend may work in place; callers rebind) ----
    writes_in_place = False  # whether updates and gradients land in the arrays given (NumPy, CuPy)

    @staticmethod
    def decayed(grad, value, weight_decay: float):
        """The one home of weight decay: L2 added to the gradient, g + wd * w, before every update rule."""
        return grad + weight_decay * value if weight_decay else grad

    def scale(self, array, factor: float):
        """array * factor (in place on backends that write in place)."""
        self.check(array)
        return array * factor

    def flatten(self, arrays):
        """One contiguous 1-D array holding every array's elements in order (a copy)."""
        return self.concat([self.xp.reshape(a, (-1,)) for a in arrays])

    def softmax_cross_entropy_counted(self, logits, targets, labels):
        """softmax_cross_entropy and count_correct of one batch together: (loss, grad, correct), all on the device.

        A training step needs all three; a GPU backend computes them in one pass over the rows.
        """
        loss, grad = self.softmax_cross_entropy(logits, targets)
        return loss, grad, self.count_correct(logits, labels)

    def column_sums(self, grad, out=None):
        """sum(grad, axis=0) in grad's dtype: a Dense layer's bias gradient. out: a destination that a backend
        which writes in place fills and returns (the reference returns a new array)."""
        self.check(grad)
        return self.xp.sum(grad, axis=0)

    def softmax_cross_entropy_totals(self, logits, labels, loss_sum, correct_sum, *, column_sums_out=None):
        """A training step's loss on integer labels: softmax_cross_entropy_counted against their one-hot rows, then
        add_to_totals of the batch; returns (loss, grad, correct, new loss_sum, new correct_sum, column sums of
        grad), the totals given left as they were. A GPU does it all in one launch.

        The column sums are the output layer's bias gradient, so that layer need not sum again;
        column_sums_out: where to write them (the bias's view of the flat gradient buffer), see column_sums.

        A label outside [0, classes) is a zero target row (as one_hot makes it) and never correct; nothing here
        checks the range, which would read back from the device: callers check their labels once, on the host.
        """
        targets = self.one_hot(labels, logits.shape[1])
        loss, grad, correct = self.softmax_cross_entropy_counted(logits, targets, labels)
        totals = self.add_to_totals(loss_sum, correct_sum, loss, correct, logits.shape[0])
        return (loss, grad, correct, *totals, self.column_sums(grad, out=column_sums_out))

    def add_to_totals(self, loss_sum, correct_sum, loss, correct, rows: int):
        """An epoch's running totals after one batch: (loss_sum + float64(loss) * rows, correct_sum + correct).

        loss_sum is a float64 0-d array on every backend, correct_sum an int64 one; nothing is read back.
        """
        self.check(loss_sum, correct_sum, loss, correct)
        return loss_sum + self.astype(loss, self.xp.float64) * rows, correct_sum + correct

    def sgd_update(self, value, grad, lr: float, weight_decay: float = 0.0):
        """value - lr * (grad + wd * value)."""
        self.check(value, grad)
        return value - lr * self.decayed(grad, value, weight_decay)

    def momentum_update(
        self, value, grad, velocity, lr: float, momentum: float, nesterov: bool, weight_decay: float = 0.0
    ):
        """SGD with (Nesterov) momentum and L2: returns (new value, new velocity).

        g = grad + wd * value; v = mu * v + g; value -= lr * (g + mu * v if nesterov else v).
        """
        self.check(value, grad, velocity)
        grad = self.decayed(grad, value, weight_decay)
        velocity = momentum * velocity + grad
        direction = grad + momentum * velocity if nesterov else velocity
        return value - lr * direction, velocity

    def dropout_mask(self, shape, p: float, key_words: tuple[int, ...], first_row: int = 0):
        """Inverted-dropout mask of `shape`: 0 with probability p, else 1 / (1 - p), in the backend dtype.

        The bits come from the counter-based generator (gpunn/backend/counter_rng.py) keyed by key_words
        (seed, layer, step): the same mask on every backend, computed on the device, nothing uploaded.
        first_row: where these rows start in the global batch (a rank's shard gets its rows' masks).
        """
        row = 1
        for size in shape[1:]:
            row *= int(size)
        bits = random_bits(self, int(shape[0]) * row, stream_key(*key_words), first_row * row)
        keep = bits >= min(round(p * 2**32), 2**32 - 1)
        return self.xp.reshape(self.astype(keep, self.dtype) * (1.0 / (1.0 - p)), tuple(shape))

    def adam_update(
        self,
        value,
        grad,
        m,
        v,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        step: int,
        weight_decay: float = 0.0,
    ):
        """Adam with bias correction at 1-based `step`: returns (new value, new m, new v).

        g = grad + wd * value; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
        value -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
        """
        self.check(value, grad, m, v)
        grad = self.decayed(grad, value, weight_decay)
        m = beta1 * m + (1.0 - beta1) * grad
        v = beta2 * v + (1.0 - beta2) * grad * grad
        m_hat_scale, v_hat_scale = adam_bias_corrections(beta1, beta2, step)
        return value - lr * (m * m_hat_scale) / (self.xp.sqrt(v * v_hat_scale) + eps), m, v

    def count_correct(self, logits, labels):
        """Number of rows whose argmax equals the integer label, as a 0-d device array."""
        self.check(logits, labels)
        hits = self.xp.argmax(logits, axis=1) == self.astype(labels, self.xp.int64)
        return self.xp.sum(self.astype(hits, self.xp.int64))


def adam_bias_corrections(beta1: float, beta2: float, step: int) -> tuple[float, float]:
    """Adam's bias-correction factors 1 / (1 - beta^t), computed on the host once per step."""
    return 1.0 / (1.0 - beta1**step), 1.0 / (1.0 - beta2**step)
