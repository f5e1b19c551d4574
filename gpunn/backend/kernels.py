"""The one registry of CUDA sources gpunn ships: CupyBackend builds its kernels from here, and
scripts/check_kernels.py (NVRTC) and the test stand-in compile exactly these sources.

Each entry is a CuPy ElementwiseKernel (typed parameter lists and a C body run once per element): the only
kind cuda_source below can render for the NVRTC check. The reference semantics of each is the generic
primitive in gpunn/backend/base.py named in its comment; tests/test_backend_parity.py compares them under
the `gpu` marker.

Weight decay: DECAYED_GRADIENT is the one CUDA line that adds L2 to the gradient (Backend.decayed on the host
side); every update rule starts with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ElementwiseSource:
    """The arguments of cupy.ElementwiseKernel(in_params, out_params, operation, name).

    types: the dtype each type placeholder other than T takes when gpunn calls the kernel (T is the
    backend dtype); scalars: the inputs gpunn passes as host scalars (CuPy decides array or scalar per call,
    from the argument). The NVRTC check compiles the call gpunn makes with these.
    """

    name: str
    in_params: str
    out_params: str
    operation: str
    types: dict = field(default_factory=dict)
    scalars: frozenset = frozenset()

    def build(self, cupy):
        return cupy.ElementwiseKernel(self.in_params, self.out_params, self.operation, self.name)


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
    ElementwiseSource("gpunn_relu", "T x", "T y", "y = x > (T)0 ? x : (T)0"),
    # Backend.linear_relu's epilogue: the bias add and the ReLU in one pass over x @ W (in place).
    ElementwiseSource(
        "gpunn_bias_relu",
        "raw T bias, int64 width",
        "T z",
        "T v = z + bias[i % width];\nz = v > (T)0 ? v : (T)0;",
        scalars=frozenset({"width"}),
    ),
    # Backend.relu_backward: grad masked where the ReLU output is zero.
    ElementwiseSource("gpunn_relu_backward", "T grad, T y", "T out", "out = y > (T)0 ? grad : (T)0"),
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
        scalars=frozenset({"m"}),
    ),
    # Backend.sgd_update on the whole flat parameter buffer: value -= lr * (grad + wd * value).
    ElementwiseSource(
        "gpunn_flat_sgd",
        "T grad, T lr, T wd",
        "T value",
        DECAYED_GRADIENT + "\nvalue = value - lr * g;",
        scalars=frozenset({"lr", "wd"}),
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
        scalars=frozenset({"lr", "mu", "wd", "nesterov"}),
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
        scalars=frozenset({"lr", "beta1", "beta2", "c1", "c2", "eps", "m_hat_scale", "v_hat_scale", "wd"}),
    ),
    # Backend.gather_images: x[r, c] = images[rows[r], c] / 255 in one launch (no uint8 gather, no cast pass).
    ElementwiseSource(
        "gpunn_gather_images",
        "raw U images, raw I rows, int64 width",
        "T x",
        _GATHER_PIXEL,
        types={"U": "uint8", "I": "int64"},
        scalars=frozenset({"width"}),
    ),
    # Backend.gather_batch: the same pixels, and the thread of each row's first pixel copies the row's label:
    # a training batch's inputs and labels in one launch.
    ElementwiseSource(
        "gpunn_gather_batch",
        "raw U images, raw I rows, raw I labels, int64 width",
        "T x, raw I batch_labels",
        _GATHER_PIXEL + "if (c == 0) batch_labels[r] = labels[rows[r]];\n",
        types={"U": "uint8", "I": "int64"},
        scalars=frozenset({"width"}),
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
        types={"I": "int64"},
        scalars=frozenset({"classes", "m"}),
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
        scalars=frozenset({"rows"}),
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
        scalars=frozenset({"rows"}),
    ),
    # Backend.softmax_cross_entropy_totals, one thread per row (launched with size=rows): the row's
    # softmax-CE gradient against its integer label (a label outside [0, classes) is a zero target row, as
    # one_hot makes it, never read out of bounds), its loss and hit; then the last thread to finish (an
    # integer ticket, the threadFenceReduction pattern) sums the rows in row order, writes the batch's mean
    # loss and correct count, and the epoch's new totals (old + loss * rows, old + correct) into fresh
    # 0-d arrays: one launch for loss, counts and epoch accumulation, deterministic, no atomics on floats.
    # The same thread also writes the gradient's column sums, each in row order (the output layer's bias
    # gradient: the last Dense then launches no sum of its own; pass its gradient view as column_sums).
    # `done` is a zeroed uint32 the last thread sets back to zero (one per stream: CupyBackend._StreamTickets).
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
            done[0] = 0;
        }
        """,
        types={"I": "int64"},
        scalars=frozenset({"classes", "m"}),
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
        scalars=frozenset({"rows"}),
    ),
)

KERNELS: dict[str, ElementwiseSource] = {k.name.removeprefix("gpunn_"): k for k in _SOURCES}
"""short name -> source; CupyBackend calls self._kernels[short name]."""

# C type of each dtype a parameter or placeholder may take (cupy/_core/_scalar.pyx _typenames, through
# cupy/_core/_dtype.pyx get_typename).
C_TYPES = {
    "bool": "bool",
    "int8": "signed char",
    "uint8": "unsigned char",
    "int32": "int",
    "uint32": "unsigned int",
    "int64": "long long",
    "float32": "float",
    "float64": "double",
}

# What CuPy's generated code relies on from cupy/_core/include/cupy/carray.cuh, reduced to the members a
# one-dimensional kernel uses (ptrdiff_t is NVRTC's builtin, as CuPy relies on): CUPY_FOR (a grid-stride loop over ptrdiff_t i), CArray (operator[](ptrdiff_t)
# and size(); a `const CArray` gives const elements) and CIndexer (size(), set(i), get()).
_CARRAY_PRELUDE = """\
#define CUPY_FOR(i, n) \\
    for (ptrdiff_t i = static_cast<ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \\
         i += static_cast<ptrdiff_t>(blockDim.x) * gridDim.x)
template <typename T, int _ndim = 1, bool _c_contiguous = true, bool _use_32bit_indexing = false>
class CArray {
  T* data_;
  ptrdiff_t size_;
public:
  __device__ ptrdiff_t size() const { return size_; }
  __device__ T& operator[](ptrdiff_t i) { return data_[i]; }
  __device__ const T& operator[](ptrdiff_t i) const { return data_[i]; }
};
template <int _ndim = 1, bool _use_32bit_indexing = false>
class CIndexer {
  ptrdiff_t size_, index_;
public:
  __device__ ptrdiff_t size() const { return size_; }
  __device__ void set(ptrdiff_t i) { index_ = i; }
  __device__ ptrdiff_t get() const { return index_; }
};
"""


@dataclass(frozen=True)
class Param:
    """One entry of a parameter list (cupy/_core/_kernel.pyx ParameterInfo): 'raw T x' -> raw, 'T', 'x'."""

    raw: bool
    type_name: str
    name: str

    @property
    def is_placeholder(self) -> bool:  # ParameterInfo: a one-letter type is a placeholder (ctype = t)
        return len(self.type_name) == 1


def parse_params(params: str) -> list[Param]:
    """'raw T grad, bool flag' -> [Param(True, 'T', 'grad'), Param(False, 'bool', 'flag')] (ParameterInfo).

    As cupy/_core/_kernel.pyx _get_param_info: only '' is an empty list; every entry between commas needs a
    type and a name (a trailing comma is CuPy's "Syntax error" when the kernel is built)."""
    if not params:
        return []
    out = []
    for text in params.split(","):
        words = text.split()
        if len(words) < 2 or any(w != "raw" for w in words[:-2]):
            raise ValueError(f"syntax error in CuPy parameter {text.strip()!r} of {params!r}")
        out.append(Param("raw" in words[:-2], words[-2], words[-1]))
    return out


def cuda_source(kernel: ElementwiseSource, dtype: str) -> str:
    """The CUDA translation unit CuPy generates for an ElementwiseKernel call with T bound to `dtype`
    (cupy/_core/_kernel.pyx _get_elementwise_kernel_code and _get_simple_elementwise_kernel_code, params from
    _get_kernel_params / _ArgInfo.get_param_c_type and get_c_var_name):

    - a non-raw array parameter x arrives as `CArray<..> _raw_x` and is bound per element by reference,
      `const T &x = _raw_x[_ind.get()];` (outputs without const);
    - a raw array parameter arrives under its own name as a CArray, indexed by the body (`x[i]`);
    - a scalar arrives by value, `const T x`;
    - the body runs inside CUPY_FOR(i, _ind.size()) after `_ind.set(i)`, followed by ';'.
    """
    types = {"T": dtype, **kernel.types}
    typedefs = "".join(f"typedef {C_TYPES[t]} {name};\n" for name, t in sorted(types.items()))
    params, binds = [], []
    for is_input, text in ((True, kernel.in_params), (False, kernel.out_params)):
        const = "const " if is_input else ""
        for p in parse_params(text):
            ctype = p.type_name if p.is_placeholder else C_TYPES[p.type_name]
            if p.raw:
                params.append(f"{const}CArray<{ctype}, 1, 1, 0> {p.name}")
            elif p.name in kernel.scalars:
                params.append(f"const {ctype} {p.name}")
            else:
                params.append(f"{const}CArray<{ctype}, 1, 1, 0> _raw_{p.name}")
                binds.append(f"{const}{ctype} &{p.name} = _raw_{p.name}[_ind.get()];")
    params.append("CIndexer<1, 0> _ind")
    body = "\n        ".join(binds + [kernel.operation.strip()])
    return (
        f"{_CARRAY_PRELUDE}{typedefs}"
        f'extern "C" __global__ void {kernel.name}({", ".join(params)}) {{\n'
        "    CUPY_FOR(i, _ind.size()) {\n"
        "        _ind.set(i);\n"
        f"        {body};\n"
        "    }\n"
        "}\n"
    )
