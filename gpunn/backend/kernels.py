"""The one registry of CUDA sources gpunn ships: CupyBackend builds its kernels from here, and
scripts/check_kernels.py compiles with NVRTC the source CuPy 14.2 itself generates for each of them.

Each entry is a CuPy ElementwiseKernel (typed parameter lists and a C body run once per element) with the
calls CupyBackend makes to it (`calls`): CuPy generates a different translation unit for each kind of
argument (array, raw array or scalar), dtype, number of dimensions, contiguity and 32/64-bit indexing, so
the check compiles each call gpunn makes (tests/gpu_proof/cupy_codegen.py; tests/test_cupy_codegen.py
shows on the CuPy stand-in that these are the calls CupyBackend makes). The reference semantics of each
kernel is the generic primitive in gpunn/backend/base.py named in its comment; tests/test_backend_parity.py
compares them under the `gpu` marker.

Weight decay: DECAYED_GRADIENT is the one CUDA line that adds L2 to the gradient (Backend.decayed on the host
side); every update rule starts with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    """One kind of call CupyBackend makes to a kernel, its arguments as CuPy's ElementwiseKernel.__call__
    receives them: an array is (dtype, shape) or (dtype, shape, strides in bytes) when not C-contiguous, or
    (dtype, shape, strides or None, bytes of the allocation it views) for a view, whose 32/64-bit indexing
    CuPy takes from its allocation (core.pyx _ndarray_base._init, _view); a host scalar is its type ('int',
    'float', 'bool' for Python's, a NumPy dtype name for NumPy's); 'T' is the backend dtype. size: the size=
    keyword, when given. The shapes are a typical run's (only what CuPy's code generation sees matters:
    dimensions, contiguity, and sizes past 2 GiB, where CuPy indexes with 64 bits).
    """

    args: tuple
    size: int | None = None


@dataclass(frozen=True)
class ElementwiseSource:
    """The arguments of cupy.ElementwiseKernel(in_params, out_params, operation, name), and the calls gpunn
    makes to the kernel (for the NVRTC check of CuPy's generated source)."""

    name: str
    in_params: str
    out_params: str
    operation: str
    calls: tuple[Call, ...] = ()

    def build(self, cupy):
        return cupy.ElementwiseKernel(self.in_params, self.out_params, self.operation, self.name)


# Typical sizes of the calls below: a batch of the default recipe, its hidden width, MNIST's classes, pixels
# and training images; a dataset of uint8 images past 2 GiB, which CuPy indexes with 64 bits. Other sizes
# of the same shapes (no axis of 1, none crossing 2 GiB) generate the same source, hence "no mutate".
_BATCH, _HIDDEN, _CLASSES, _PIXELS, _IMAGES = 64, 128, 10, 784, 60_000  # pragma: no mutate
_LARGE_IMAGES = 3_000_000  # pragma: no mutate
_PARAMETERS = _PIXELS * _HIDDEN + _HIDDEN + _HIDDEN * _CLASSES + _CLASSES  # pragma: no mutate


def _t(*shape):
    """A C-contiguous array of the backend dtype."""
    return ("T", shape)


DECAYED_GRADIENT = "T g = grad + wd * value;"

# One pixel of a gathered batch: x[r, c] = images[rows[r], c] / 255 (defines r and c for what follows).
_GATHER_PIXEL = """
        long long r = i / width;
        long long c = i - r * width;
        x = (T)images[(long long)rows[r] * width + c] / (T)255;
        """

# Row i of softmax cross-entropy with its gradient written: best (first argmax), label and row_loss (the row's share of
# the mean, -sum(y log p) / m) left for the kernel's end; TARGET is the expression of y at column k.
_SOFTMAX_XENT_ROW = """
        const long long base = i * classes;
        const long long label = (long long)labels[i];
        T row_max = logits[base];
        long long best = 0;
        for (long long k = 1; k < classes; ++k) {
            if (logits[base + k] > row_max) { row_max = logits[base + k]; best = k; }
        }
        T total = 0;
        for (long long k = 0; k < classes; ++k) total += exp(logits[base + k] - row_max);
        const T log_norm = log(total);
        T row_loss = 0;
        for (long long k = 0; k < classes; ++k) {
            const T log_p = logits[base + k] - row_max - log_norm;
            const T y = TARGET;
            grad[base + k] = (exp(log_p) - y) / m;
            row_loss -= y * log_p / m;
        }
        """

_SOURCES = (
    # Backend.relu without the zeros_like temporary the reference builds.
    ElementwiseSource(
        "gpunn_relu", "T x", "T y", "y = x > (T)0 ? x : (T)0", calls=(Call((_t(_BATCH, _HIDDEN),)),)
    ),
    # Backend.linear_relu's epilogue: the bias add and the ReLU in one pass over x @ W (in place).
    ElementwiseSource(
        "gpunn_bias_relu",
        "raw T bias, int64 width",
        "T z",
        "T v = z + bias[i % width];\nz = v > (T)0 ? v : (T)0;",
        calls=(Call((_t(_HIDDEN), "int", _t(_BATCH, _HIDDEN))),),  # in place on the matmul's output
    ),
    # Backend.relu_backward: grad masked where the ReLU output is zero.
    ElementwiseSource(
        "gpunn_relu_backward",
        "T grad, T y",
        "T out",
        "out = y > (T)0 ? grad : (T)0",
        calls=(Call((_t(_BATCH, _HIDDEN), _t(_BATCH, _HIDDEN))),),
    ),
    # Backend.softmax_cross_entropy's element pass (one-hot targets, row statistics computed before).
    ElementwiseSource(
        "gpunn_softmax_xent",
        "T z, T row_max, T log_norm, T y, T m",
        "T grad, T loss_term",
        """
        T log_p = z - row_max - log_norm;
        grad = (exp(log_p) - y) / m;
        loss_term = -y * log_p;
        """,
        # row_max and log_norm keep their reduced axis (m, 1): CuPy broadcasts them with a zero stride
        calls=(Call((_t(_BATCH, _CLASSES), _t(_BATCH, 1), _t(_BATCH, 1), _t(_BATCH, _CLASSES), "T")),),
    ),
    # Backend.sgd_update on the whole flat parameter buffer: value -= lr * (grad + wd * value).
    ElementwiseSource(
        "gpunn_flat_sgd",
        "T grad, T lr, T wd",
        "T value",
        DECAYED_GRADIENT + "\nvalue = value - lr * g;",
        calls=(Call((_t(_PARAMETERS), "T", "T", _t(_PARAMETERS))),),
    ),
    # Backend.momentum_update: v = mu v + g; value -= lr * (nesterov ? g + mu v : v).
    ElementwiseSource(
        "gpunn_flat_momentum",
        "T grad, T lr, T mu, T wd, bool nesterov",
        "T value, T velocity",
        DECAYED_GRADIENT
        + """
        T v = mu * velocity + g;
        velocity = v;
        value = value - lr * (nesterov ? g + mu * v : v);
        """,
        calls=(Call((_t(_PARAMETERS), "T", "T", "T", "bool", _t(_PARAMETERS), _t(_PARAMETERS))),),
    ),
    # Backend.adam_update; c1 = 1 - beta1, c2 = 1 - beta2 and the bias corrections come from the host, rounded
    # to T once, as NumPy rounds its Python-float scalars.
    ElementwiseSource(
        "gpunn_flat_adam",
        "T grad, T lr, T beta1, T beta2, T c1, T c2, T eps, T m_hat_scale, T v_hat_scale, T wd",
        "T value, T m, T v",
        DECAYED_GRADIENT
        + """
        T m_new = beta1 * m + c1 * g;
        T v_new = beta2 * v + c2 * g * g;
        m = m_new;
        v = v_new;
        value = value - lr * (m_new * m_hat_scale) / (sqrt(v_new * v_hat_scale) + eps);
        """,
        calls=(Call((_t(_PARAMETERS), *["T"] * 9, _t(_PARAMETERS), _t(_PARAMETERS), _t(_PARAMETERS))),),
    ),
    # Backend.gather_images: x[r, c] = images[rows[r], c] / 255 in one launch (no uint8 gather, no cast pass).
    ElementwiseSource(
        "gpunn_gather_images",
        "raw U images, raw I rows, int64 width",
        "T x",
        _GATHER_PIXEL,
        calls=tuple(
            Call((("uint8", (images, _PIXELS)), ("int64", (_BATCH,)), "int", _t(_BATCH, _PIXELS)))
            for images in (_IMAGES, _LARGE_IMAGES)
        ),
    ),
    # Backend.gather_batch: the same pixels, and the thread of each row's first pixel copies the row's label:
    # a training batch's inputs and labels in one launch.
    ElementwiseSource(
        "gpunn_gather_batch",
        "raw U images, raw I rows, raw I labels, int64 width",
        "T x, raw I batch_labels",
        _GATHER_PIXEL + "if (c == 0) batch_labels[r] = labels[rows[r]];\n",
        calls=tuple(
            Call(
                (
                    ("uint8", (images, _PIXELS)),
                    ("int64", (_BATCH,)),
                    ("int64", (images,)),
                    "int",
                    _t(_BATCH, _PIXELS),
                    ("int64", (_BATCH,)),
                )
            )
            for images in (_IMAGES, _LARGE_IMAGES)
        ),
    ),
    # Backend.softmax_cross_entropy_counted, one thread per row: the row's softmax-CE gradient (p - y) / m, its
    # share of the mean loss -sum(y log p) / m, and whether its first argmax equals the label.
    ElementwiseSource(
        "gpunn_softmax_xent_rows",
        "raw T logits, raw T targets, raw I labels, int64 classes, T m",
        "raw T grad, T loss_row, int64 hit",
        _SOFTMAX_XENT_ROW.replace("TARGET", "targets[base + k]")
        + """
        loss_row = row_loss;
        hit = (best == label) ? 1 : 0;
        """,
        calls=(
            Call(
                (
                    _t(_BATCH, _CLASSES),
                    _t(_BATCH, _CLASSES),
                    ("int64", (_BATCH,)),
                    "int",
                    "T",
                    _t(_BATCH, _CLASSES),
                    _t(_BATCH),
                    ("int64", (_BATCH,)),
                )
            ),
        ),
    ),
    # Backend.relu_linear_backward's first pass, one thread per column: the ReLU-masked gradient and its column
    # sums (the bias gradient), in one launch instead of a mask pass and a sum.
    ElementwiseSource(
        "gpunn_relu_backward_bias",
        "raw T grad, raw T y, int64 rows",
        "raw T masked, T bias_grad",
        """
        const ptrdiff_t width = _ind.size();
        T total = 0;
        for (long long r = 0; r < rows; ++r) {
            const ptrdiff_t k = r * width + i;
            const T g = y[k] > (T)0 ? grad[k] : (T)0;
            masked[k] = g;
            total += g;
        }
        bias_grad = total;
        """,
        # bias_grad: a fresh array, or the bias's view of the flat gradient buffer
        calls=(Call((_t(_BATCH, _HIDDEN), _t(_BATCH, _HIDDEN), "int", _t(_BATCH, _HIDDEN), _t(_HIDDEN))),),
    ),
    # Backend.softmax_cross_entropy_counted's totals: the batch loss and correct count from the row kernel's
    # per-row values, summed in row order by a single thread (launched with size=1): one launch, not two sums.
    ElementwiseSource(
        "gpunn_batch_totals",
        "raw T loss_rows, raw int64 hits, int64 rows",
        "raw T loss, raw int64 correct",
        """
        T total = 0;
        long long count = 0;
        for (long long r = 0; r < rows; ++r) {
            total += loss_rows[r];
            count += hits[r];
        }
        loss[0] = total;
        correct[0] = count;
        """,
        calls=(
            Call(
                (_t(_BATCH), ("int64", (_BATCH,)), "int", _t(), ("int64", ())),
                size=1,  # pragma: no mutate (any size= is the same one-dimensional loop to CuPy)
            ),
        ),
    ),
    # Backend.softmax_cross_entropy_totals, one thread per row (launched with size=rows): the row's
    # softmax-CE gradient against its integer label (a label outside [0, classes) is a zero target row, as
    # one_hot makes it, never read out of bounds), its loss and hit; then the last thread to finish (an
    # integer ticket, the threadFenceReduction pattern) sums the rows in row order, writes the batch's mean
    # loss and correct count, and the epoch's new totals (old + loss * rows, old + correct) into fresh
    # 0-d arrays: one launch for loss, counts and epoch accumulation, deterministic, no atomics on floats.
    # The same thread also writes the gradient's column sums, each in row order (the output layer's bias
    # gradient: the last Dense then launches no sum of its own; pass its gradient view as column_sums).
    # `done` is a zeroed uint32 the last thread sets back to zero (one per stream: CupyBackend._StreamTickets),
    # with an atomic: a plain store would race with the other threads' (relaxed) atomicAdds, ordered by nothing.
    # Other threads' rows are read through volatile (past a non-coherent L1), each at its element's address
    # from the CArray (its logical index, whatever the array's strides: grad is empty_like(logits)).
    ElementwiseSource(
        "gpunn_softmax_xent_totals",
        "raw T logits, raw I labels, int64 classes, T m, raw float64 loss_sum_in, raw I correct_sum_in",
        "raw T grad, raw T loss_rows, raw I hits, raw uint32 done, raw T batch_loss, raw I batch_correct, "
        "raw float64 loss_sum, raw I correct_sum, raw T column_sums",
        _SOFTMAX_XENT_ROW.replace("TARGET", "(k == label ? (T)1 : (T)0)")
        + """
        loss_rows[i] = row_loss;
        hits[i] = (best == label) ? 1 : 0;
        __threadfence();
        const ptrdiff_t rows = _ind.size();
        if (atomicAdd(&done[0], 1u) == (unsigned int)(rows - 1)) {
            __threadfence();
            T loss = 0;
            I count = 0;
            for (ptrdiff_t r = 0; r < rows; ++r) {
                loss += *(const volatile T*)&loss_rows[r];
                count += *(const volatile I*)&hits[r];
            }
            for (long long k = 0; k < classes; ++k) {
                T column = 0;
                for (ptrdiff_t r = 0; r < rows; ++r) column += *(const volatile T*)&grad[r * classes + k];
                column_sums[k] = column;
            }
            batch_loss[0] = loss;
            batch_correct[0] = count;
            loss_sum[0] = loss_sum_in[0] + (double)loss * (double)rows;
            correct_sum[0] = correct_sum_in[0] + count;
            atomicExch(&done[0], 0u);
        }
        """,
        # the epoch's totals in and out, the batch's loss and count: 0-d arrays
        calls=(
            Call(
                (
                    _t(_BATCH, _CLASSES),
                    ("int64", (_BATCH,)),
                    "int",
                    "T",
                    ("float64", ()),
                    ("int64", ()),
                    _t(_BATCH, _CLASSES),
                    _t(_BATCH),
                    ("int64", (_BATCH,)),
                    ("uint32", (1,)),  # pragma: no mutate (any length: raw, 1-D)
                    _t(),
                    ("int64", ()),
                    ("float64", ()),
                    ("int64", ()),
                    _t(_CLASSES),
                ),
                size=_BATCH,
            ),
        ),
    ),
    # Backend.add_to_totals in place on the epoch's 0-d accumulators: one launch instead of four.
    ElementwiseSource(
        "gpunn_add_to_totals",
        "T loss, int64 correct, float64 rows",
        "float64 loss_sum, int64 correct_sum",
        """
        loss_sum = loss_sum + (double)loss * rows;
        correct_sum = correct_sum + correct;
        """,
        calls=(Call((_t(), ("int64", ()), "float64", ("float64", ()), ("int64", ()))),),  # all 0-d
    ),
)

KERNELS: dict[str, ElementwiseSource] = {k.name.removeprefix("gpunn_"): k for k in _SOURCES}
"""short name -> source; CupyBackend calls self._kernels[short name]."""
