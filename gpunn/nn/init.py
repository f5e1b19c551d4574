"""Weight initialisers, drawn on the host from the seeded Generator (so every backend starts equal).

Each takes (rng, fan_in, fan_out) and returns a float64 host array of shape (fan_in, fan_out).
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


# The one registry of initialiser names: config validation, the CLI's --init choices and Dense read it.
INITIALIZERS = {"he": he_normal, "xavier": xavier_normal}


def get_initializer(name: str):
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown initializer {name!r}: choose from {', '.join(INITIALIZERS)}") from None
