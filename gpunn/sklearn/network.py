"""The estimators' math on the device: scikit-learn's MLP forward pass, losses and backprop via the backend.

Each activation's forward and derivative sit together and call only the backend. The losses, the L2 term
(0.5 * alpha * ||W||^2 / sum of sample weights, weights only) and the output deltas are scikit-learn's, so
a float64 model follows the same path as sklearn.neural_network's. Network and Objective are the model and
the loss that gpunn.nn.step.train_step takes, so the estimators train through the one training step.
"""

from __future__ import annotations

import math

import numpy as np

from gpunn.nn.flat import ParameterBuffer


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


class Objective:
    """scikit-learn's loss in train_step's contract (gpunn.nn.step), plus the L2 term as its gradient hook.

    Called as loss(backend, z, (y, sample_weight)) on the output layer's pre-activation z: applies the output
    activation and returns the weighted mean loss with 0.5 * alpha * ||W||^2 / sum of weights added, and the
    gradient with respect to z (output - y, the canonical link, weighted, over the sum of weights). The L2
    gradient, alpha * W / sum of weights on weights only, cannot be the optimizer's weight decay (that is not
    divided by the batch's weight and reaches biases too): add_penalty_gradient adds it as train_step's hook.
    """

    def __init__(self, network: Network, alpha: float):
        self.network, self.alpha = network, float(alpha)
        self.penalty_scale = 0.0  # alpha / the last batch's sum of weights, for the hook

    def __call__(self, backend, z, batch):
        y, sample_weight = batch
        xp, network = backend.xp, self.network
        weight_sum = y.shape[0] if sample_weight is None else xp.sum(sample_weight)
        out = OUTPUT_ACTIVATIONS[network.out_activation](backend, z)
        loss = loss_value(backend, network.loss, y, out, sample_weight, weight_sum)
        squares = sum(xp.sum(w * w) for w in network.coefs)
        loss = loss + (0.5 * self.alpha) * squares / weight_sum
        delta = out - y
        if sample_weight is not None:
            delta = delta * xp.reshape(sample_weight, (-1, 1))
        self.penalty_scale = self.alpha / weight_sum
        return loss, delta / weight_sum

    def add_penalty_gradient(self, buffer) -> bool:
        """gradient_hook: the L2 gradient onto the weights, which lead the flat buffer (biases follow)."""
        if self.alpha:
            n, gradient = self.network.n_weights, buffer.gradient_with_slot
            penalised = gradient[:n] + self.penalty_scale * buffer.values[:n]
            buffer.set_gradient(buffer.backend.concat([penalised, gradient[n:]]))
        return False  # never skip the update


class Network:
    """Device weights (coefs then intercepts, as Params) and the two passes over them.

    begin_update/buffer are the model interface of gpunn.nn.step.train_step: begin_update returns the output
    layer's pre-activation (the Objective applies the output activation) and the backprop that takes its
    gradient.
    trainable=True puts the Params in one flat ParameterBuffer (a copy of the given values).
    """

    def __init__(
        self,
        backend,
        params,
        activation: str,
        out_activation: str,
        loss: str,
        trainable: bool = False,
        sparse_input: bool = False,
    ):
        self.backend = backend
        self.params = params  # [W_0..W_{L-1}, b_0..b_{L-1}], each a gpunn Param on `backend`
        self.n_layers = len(params) // 2
        self.n_weights = sum(math.prod(p.value.shape) for p in params[: self.n_layers])
        self.activation, self.out_activation = activation, out_activation
        self.loss = "binary_log_loss" if loss == "log_loss" and out_activation == "logistic" else loss
        self.sparse_input = sparse_input  # what forward (training) gets: a matrix from sparse_from_host
        self.buffer = ParameterBuffer(backend, params) if trainable else None

    @property
    def coefs(self):
        return [p.value for p in self.params[: self.n_layers]]

    @property
    def intercepts(self):
        return [p.value for p in self.params[self.n_layers :]]

    def _layers(self, x, sparse_input: bool) -> list:
        """[x, a_1, ..., a_{L-1}, z_L]: the hidden activations and the output layer's pre-activation."""
        backend = self.backend
        hidden = HIDDEN_ACTIVATIONS[self.activation][0]
        activations = [x]
        for i, (weight, bias) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            if i == 0 and sparse_input:
                z = backend.sparse_linear(x, weight, bias)
            else:
                z = backend.linear(activations[-1], weight, bias)
            activations.append(z if i == self.n_layers - 1 else hidden(backend, z))
        return activations

    def output(self, x, sparse_input: bool = False):
        """The output activations (predictions); x is sparse when it came from sparse_from_host."""
        return OUTPUT_ACTIVATIONS[self.out_activation](self.backend, self._layers(x, sparse_input)[-1])

    def begin_update(self, x, step=None, first_row: int = 0):
        """train_step's forward: (the output layer's pre-activation, backprop), the layers kept in backprop
        alone (no dropout here, so step and first_row are unused)."""
        activations = self._layers(x, self.sparse_input)
        return activations[-1], lambda delta: self._backprop(activations, delta)

    def _backprop(self, activations, delta) -> None:
        """Every Param's .grad from the gradient at the output pre-activation, as sklearn's _backprop."""
        backend = self.backend
        derivative = HIDDEN_ACTIVATIONS[self.activation][1]
        for i in range(self.n_layers - 1, -1, -1):
            weight, bias = self.params[i], self.params[self.n_layers + i]
            if i == 0 and self.sparse_input:
                weight.grad, bias.grad = (
                    backend.sparse_weight_grad(activations[0], delta),
                    backend.xp.sum(delta, axis=0),
                )
                grad_x = None
            else:
                grad_x, weight.grad, bias.grad = backend.linear_backward(
                    activations[i], weight.value, delta, i > 0, out=(weight.grad, bias.grad)
                )
            if i > 0:
                delta = derivative(backend, activations[i], grad_x)

    def loss_and_gradient(self, x, batch, objective: Objective):
        """(loss, flat gradient) at the current weights: train_step short of the update, for L-BFGS, whose
        update SciPy owns on the host (so it cannot go through train_step and an Optimizer)."""
        outputs, backprop = self.begin_update(x)
        loss, delta = objective(self.backend, outputs, batch)
        backprop(delta)
        self.buffer.collect_gradient()
        objective.add_penalty_gradient(self.buffer)
        return loss, self.buffer.gradient


def glorot_bounds(fan_in: int, fan_out: int, activation: str) -> float:
    """scikit-learn's uniform init bound: sqrt(factor / (fan_in + fan_out)), factor 2 for logistic else 6."""
    return math.sqrt((2.0 if activation == "logistic" else 6.0) / (fan_in + fan_out))
