"""Weight initialisers, drawn on the host from the seeded generator (so every backend starts equal).

Each takes (rng, fan_in, fan_out) and returns a float64 host array of shape (fan_in, fan_out); `rng` is a
NumPy Generator, or a RandomState (scikit-learn's `random_state`): both draw with the same method names.
Biases start at zero unless the initialiser draws them too (BIAS_INITIALIZERS): Dense draws a layer's
weight, then its bias, before the next layer's, which is scikit-learn's order.
"""

from __future__ import annotations

import math

import numpy as np


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """N(0, sqrt(2 / fan_in)): keeps ReLU activations' variance steady through depth."""
    return rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)


def xavier_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """N(0, sqrt(2 / (fan_in + fan_out))): Glorot's choice for tanh/sigmoid."""
    return rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / (fan_in + fan_out))


def glorot_bound(fan_in: int, fan_out: int, factor: float) -> float:
    """sqrt(factor / (fan_in + fan_out)): Glorot & Bengio's uniform bound for factor 6; scikit-learn uses 2
    before logistic units (their derivative is a quarter of tanh's at 0)."""
    return math.sqrt(factor / (fan_in + fan_out))


def _glorot_uniform(factor: float):
    def weight(rng, fan_in: int, fan_out: int) -> np.ndarray:
        bound = glorot_bound(fan_in, fan_out, factor)
        return rng.uniform(-bound, bound, (fan_in, fan_out))

    def bias(rng, fan_in: int, fan_out: int) -> np.ndarray:
        bound = glorot_bound(fan_in, fan_out, factor)
        return rng.uniform(-bound, bound, fan_out)

    return weight, bias


glorot_uniform, glorot_uniform_bias = _glorot_uniform(6.0)
glorot_uniform_logistic, glorot_uniform_logistic_bias = _glorot_uniform(2.0)

# The one registry of initialiser names: config validation, the CLI's --init choices and Dense read it.
INITIALIZERS = {
    "he": he_normal,
    "xavier": xavier_normal,
    "glorot_uniform": glorot_uniform,  # scikit-learn's MLP init: U(-b, b), weights and biases
    "glorot_uniform_logistic": glorot_uniform_logistic,  # the same before logistic units
}
# The initialisers that draw the bias too (from the same rng, right after the weight); others start it at 0.
BIAS_INITIALIZERS = {
    "glorot_uniform": glorot_uniform_bias,
    "glorot_uniform_logistic": glorot_uniform_logistic_bias,
}


def get_initializer(name: str):
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown initializer {name!r}: choose from {', '.join(INITIALIZERS)}") from None


def initial_bias(name: str, rng, fan_in: int, fan_out: int) -> np.ndarray:
    """The bias a layer initialised by `name` starts from: drawn when the initialiser draws it, else zeros."""
    draw = BIAS_INITIALIZERS.get(name)
    return np.zeros(fan_out) if draw is None else draw(rng, fan_in, fan_out)
