"""CUDA sources of the fused CuPy kernels that make a training step few launches (issue 14).

Each kernel is a cupy.ElementwiseKernel(in_params, out_params, operation, name); its strings are module
constants so a compile check and a CuPy stand-in can read exactly what CupyBackend builds. The reference
semantics of each is the generic primitive in gpunn/backend/base.py named in its comment;
tests/test_backend_parity.py compares them under the `gpu` marker.

Weight decay: DECAYED_GRADIENT is the one CUDA line that adds L2 to the gradient (Backend.decayed on the host
side); every update rule starts with it.
"""

from __future__ import annotations

DECAYED_GRADIENT = "T g = grad + wd * value;"

# Backend.sgd_update on the whole flat parameter buffer: value -= lr * (grad + wd * value).
FLAT_SGD_NAME = "gpunn_flat_sgd"
FLAT_SGD_IN = "T grad, T lr, T wd"
FLAT_SGD_OUT = "T value"
FLAT_SGD_OPERATION = DECAYED_GRADIENT + "\nvalue = value - lr * g;"

# Backend.momentum_update: v = mu v + g; value -= lr * (nesterov ? g + mu v : v).
FLAT_MOMENTUM_NAME = "gpunn_flat_momentum"
FLAT_MOMENTUM_IN = "T grad, T lr, T mu, T wd, bool nesterov"
FLAT_MOMENTUM_OUT = "T value, T velocity"
FLAT_MOMENTUM_OPERATION = (
    DECAYED_GRADIENT
    + """
T v = mu * velocity + g;
velocity = v;
value = value - lr * (nesterov ? g + mu * v : v);
"""
)

# Backend.adam_update; c1 = 1 - beta1, c2 = 1 - beta2 and the bias corrections come from the host, rounded to
# T once, as NumPy rounds its Python-float scalars.
FLAT_ADAM_NAME = "gpunn_flat_adam"
FLAT_ADAM_IN = "T grad, T lr, T beta1, T beta2, T c1, T c2, T eps, T m_hat_scale, T v_hat_scale, T wd"
FLAT_ADAM_OUT = "T value, T m, T v"
FLAT_ADAM_OPERATION = (
    DECAYED_GRADIENT
    + """
T m_new = beta1 * m + c1 * g;
T v_new = beta2 * v + c2 * g * g;
m = m_new;
v = v_new;
value = value - lr * (m_new * m_hat_scale) / (sqrt(v_new * v_hat_scale) + eps);
"""
)

# Backend.gather_images: x[r, c] = images[rows[r], c] / 255 in one launch (no uint8 gather, no cast pass).
GATHER_IMAGES_NAME = "gpunn_gather_images"
GATHER_IMAGES_IN = "raw U images, raw I rows, int64 width"
GATHER_IMAGES_OUT = "T x"
GATHER_IMAGES_OPERATION = """
long long r = i / width;
long long c = i - r * width;
x = (T)images[(long long)rows[r] * width + c] / (T)255;
"""

# Backend.softmax_cross_entropy_counted, one thread per row: the row's softmax-CE gradient (p - y) / m, its
# share of the mean loss -sum(y log p) / m, and whether its first argmax equals the label.
SOFTMAX_XENT_ROWS_NAME = "gpunn_softmax_xent_rows"
SOFTMAX_XENT_ROWS_IN = "raw T logits, raw T targets, raw I labels, int64 classes, T m"
SOFTMAX_XENT_ROWS_OUT = "raw T grad, T loss_row, int64 hit"
SOFTMAX_XENT_ROWS_OPERATION = """
const long long base = i * classes;
T row_max = logits[base];
long long best = 0;
for (long long k = 1; k < classes; ++k) {
    if (logits[base + k] > row_max) { row_max = logits[base + k]; best = k; }
}
T total = 0;
for (long long k = 0; k < classes; ++k) total += exp(logits[base + k] - row_max);
const T log_norm = log(total);
T loss = 0;
for (long long k = 0; k < classes; ++k) {
    const T log_p = logits[base + k] - row_max - log_norm;
    const T y = targets[base + k];
    grad[base + k] = (exp(log_p) - y) / m;
    loss -= y * log_p / m;
}
loss_row = loss;
hit = (best == (long long)labels[i]) ? 1 : 0;
"""

# Backend.relu without the zeros_like temporary the reference builds.
RELU_NAME = "gpunn_relu"
RELU_IN = "T x"
RELU_OUT = "T y"
RELU_OPERATION = "y = x > (T)0 ? x : (T)0;"

# Backend.add_to_totals in place on the epoch's 0-d accumulators: one launch instead of four.
ADD_TO_TOTALS_NAME = "gpunn_add_to_totals"
ADD_TO_TOTALS_IN = "T loss, int64 correct, float64 rows"
ADD_TO_TOTALS_OUT = "float64 loss_sum, int64 correct_sum"
ADD_TO_TOTALS_OPERATION = """
loss_sum = loss_sum + (double)loss * rows;
correct_sum = correct_sum + correct;
"""

FUSED_KERNELS = {
    "flat_sgd": (FLAT_SGD_IN, FLAT_SGD_OUT, FLAT_SGD_OPERATION, FLAT_SGD_NAME),
    "flat_momentum": (FLAT_MOMENTUM_IN, FLAT_MOMENTUM_OUT, FLAT_MOMENTUM_OPERATION, FLAT_MOMENTUM_NAME),
    "flat_adam": (FLAT_ADAM_IN, FLAT_ADAM_OUT, FLAT_ADAM_OPERATION, FLAT_ADAM_NAME),
    "gather_images": (GATHER_IMAGES_IN, GATHER_IMAGES_OUT, GATHER_IMAGES_OPERATION, GATHER_IMAGES_NAME),
    "softmax_xent_rows": (
        SOFTMAX_XENT_ROWS_IN,
        SOFTMAX_XENT_ROWS_OUT,
        SOFTMAX_XENT_ROWS_OPERATION,
        SOFTMAX_XENT_ROWS_NAME,
    ),
    "relu": (RELU_IN, RELU_OUT, RELU_OPERATION, RELU_NAME),
    "add_to_totals": (ADD_TO_TOTALS_IN, ADD_TO_TOTALS_OUT, ADD_TO_TOTALS_OPERATION, ADD_TO_TOTALS_NAME),
}
"""name -> the cupy.ElementwiseKernel arguments (in_params, out_params, operation, name)."""
