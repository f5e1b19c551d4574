"""scikit-learn's MLP as a gpunn.nn model: its names for gpunn's layers, initialiser and losses.

An estimator's model is a Sequential of Dense layers with the hidden activation between them, ending at the
output layer's pre-activation; the output activation is the loss's link (gpunn.nn.losses.LinkedLoss), so
training gets scikit-learn's canonical output delta (output - y) and prediction applies the link. Nothing
here computes: the arithmetic is gpunn.nn's.
"""

from __future__ import annotations

from gpunn.nn.layers import Dense, Identity, Layer, ReLU, Sigmoid, Tanh
from gpunn.nn.losses import BinaryLogLoss, HalfSquaredError, LinkedLoss, LogLoss, PoissonLoss
from gpunn.nn.model import Sequential

HIDDEN_ACTIVATIONS: dict[str, type[Layer]] = {
    "identity": Identity,
    "logistic": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
}
# out_activation_ -> the loss it is the link of (scikit-learn's pairs: the loss follows the output)
OUTPUT_LOSSES: dict[str, type[LinkedLoss]] = {
    "identity": HalfSquaredError,
    "exp": PoissonLoss,
    "softmax": LogLoss,
    "logistic": BinaryLogLoss,
}


def initializer_for(activation: str) -> str:
    """scikit-learn's Glorot uniform init, with its smaller bound before logistic units."""
    return "glorot_uniform_logistic" if activation == "logistic" else "glorot_uniform"


def build_model(layer_units: list[int], activation: str, backend, rng=None) -> Sequential:
    """Dense layers of `layer_units` with `activation` between them, weights drawn from `rng` (the
    estimator's RandomState: scikit-learn's weights, in its order) or left to be set."""
    init = initializer_for(activation)
    layers: list[Layer] = []
    for index, (fan_in, fan_out) in enumerate(zip(layer_units[:-1], layer_units[1:], strict=True)):
        layers.append(Dense(fan_in, fan_out, init))
        if index < len(layer_units) - 2:
            layers.append(HIDDEN_ACTIVATIONS[activation]())
    return Sequential(layers, backend, rng=rng)


def output_loss(out_activation: str) -> LinkedLoss:
    return OUTPUT_LOSSES[out_activation]()
