"""The estimators' math on the device: scikit-learn's MLP forward pass, losses and backprop via the backend.

Each activation's forward and derivative sit together and call only the backend. The losses, the L2 term
(0.5 * alpha * ||W||^2 / sum of sample weights, weights only) and the output deltas are scikit-learn's, so
a float64 model follows the same path as sklearn.neural_network's.
"""

from __future__ import annotations

import math

import numpy as np


def _identity(backend, z):
    return z


def _identity_derivative(backend, a, delta):
    return delta


def _logistic(backend, z):
    return 0.5 * (1.0 + backend.xp.tanh(0.5 * z))  # 1 / (1 + exp(-z)) without overflow


def _logistic_derivative(backend, a, delta):
    return delta * a * (1.0 - a)


def _tanh(backend, z):
    return backend.xp.tanh(z)


def _tanh_derivative(backend, a, delta):
    return delta * (1.0 - a * a)


def _relu(backend, z):
    return backend.relu(z)


def _relu_derivative(backend, a, delta):
    return backend.relu_backward(delta, a)


def _softmax(backend, z):
    return backend.softmax(z)


def _exp(backend, z):
    return backend.xp.exp(z)


HIDDEN_ACTIVATIONS = {
    "identity": (_identity, _identity_derivative),
    "logistic": (_logistic, _logistic_derivative),
    "tanh": (_tanh, _tanh_derivative),
    "relu": (_relu, _relu_derivative),
}
OUTPUT_ACTIVATIONS = {"identity": _identity, "logistic": _logistic, "softmax": _softmax, "exp": _exp}


def _weighted_mean_rows(backend, per_row, sample_weight, weight_sum):
    """sum over rows of per_row * w / sum(w) (plain mean without weights): numpy.average along axis 0."""
    if sample_weight is not None:
        per_row = per_row * backend.xp.reshape(sample_weight, (-1, 1))
    return backend.xp.sum(per_row, axis=0) / weight_sum


def _xlogy(backend, x, y):
    xp = backend.xp
    safe = xp.where(x == 0, xp.ones_like(y), y)
    return xp.where(x == 0, xp.zeros_like(x), x * xp.log(safe))


def loss_value(backend, name: str, y, out, sample_weight, weight_sum):
    """scikit-learn's LOSS_FUNCTIONS on device arrays: a 0-d device array."""
    xp = backend.xp
    if name == "squared_error":
        diff = y - out
        return 0.5 * xp.mean(_weighted_mean_rows(backend, diff * diff, sample_weight, weight_sum))
    if name == "poisson":
        per = _xlogy(backend, y, y / out) - y + out
        return xp.sum(_weighted_mean_rows(backend, per, sample_weight, weight_sum))
    eps = float(np.finfo(backend.dtype_name).eps)
    p = xp.clip(out, eps, 1.0 - eps)
    if name == "binary_log_loss":
        per = _xlogy(backend, y, p) + _xlogy(backend, 1.0 - y, 1.0 - p)
    else:  # log_loss on a softmax output
        per = _xlogy(backend, y, p)
    return -xp.sum(_weighted_mean_rows(backend, per, sample_weight, weight_sum))


class Network:
    """Device weights (coefs then intercepts, as Params for the optimizer) and the two passes over them."""

    def __init__(self, backend, params, activation: str, out_activation: str, loss: str):
        self.backend = backend
        self.params = params  # [W_0..W_{L-1}, b_0..b_{L-1}], each a gpunn Param on `backend`
        self.n_layers = len(params) // 2
        self.activation, self.out_activation = activation, out_activation
        self.loss = "binary_log_loss" if loss == "log_loss" and out_activation == "logistic" else loss

    @property
    def coefs(self):
        return [p.value for p in self.params[: self.n_layers]]

    @property
    def intercepts(self):
        return [p.value for p in self.params[self.n_layers :]]

    def forward(self, x, sparse_input: bool = False) -> list:
        """All layer outputs [x, a_1, ..., output]; x is sparse when it came from sparse_from_host."""
        backend = self.backend
        hidden = HIDDEN_ACTIVATIONS[self.activation][0]
        activations = [x]
        for i, (weight, bias) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            if i == 0 and sparse_input:
                z = backend.sparse_linear(x, weight, bias)
            else:
                z = backend.linear(activations[-1], weight, bias)
            last = i == self.n_layers - 1
            activations.append(
                OUTPUT_ACTIVATIONS[self.out_activation](backend, z) if last else hidden(backend, z)
            )
        return activations

    def output(self, x, sparse_input: bool = False):
        return self.forward(x, sparse_input)[-1]

    def backprop(self, x, y, sample_weight, alpha: float, sparse_input: bool = False):
        """Loss (0-d device array, L2 term included) and every Param's .grad, as sklearn's _backprop."""
        backend, xp = self.backend, self.backend.xp
        weight_sum = x.shape[0] if sample_weight is None else xp.sum(sample_weight)
        activations = self.forward(x, sparse_input)
        loss = loss_value(backend, self.loss, y, activations[-1], sample_weight, weight_sum)
        squares = sum(xp.sum(w * w) for w in self.coefs)
        loss = loss + (0.5 * alpha) * squares / weight_sum
        delta = activations[-1] - y  # the canonical link of each output activation and its loss
        if sample_weight is not None:
            delta = delta * xp.reshape(sample_weight, (-1, 1))
        derivative = HIDDEN_ACTIVATIONS[self.activation][1]
        for i in range(self.n_layers - 1, -1, -1):
            weight, bias = self.params[i], self.params[self.n_layers + i]
            if i == 0 and sparse_input:
                grad_w, grad_x = backend.sparse_weight_grad(x, delta), None
                grad_b = xp.sum(delta, axis=0)
            else:
                grad_x, grad_w, grad_b = backend.linear_backward(activations[i], weight.value, delta, i > 0)
            weight.grad = (grad_w + alpha * weight.value) / weight_sum
            bias.grad = grad_b / weight_sum
            if i > 0:
                delta = derivative(backend, activations[i], grad_x)
        return loss


def glorot_bounds(fan_in: int, fan_out: int, activation: str) -> float:
    """scikit-learn's uniform init bound: sqrt(factor / (fan_in + fan_out)), factor 2 for logistic else 6."""
    return math.sqrt((2.0 if activation == "logistic" else 6.0) / (fan_in + fan_out))
