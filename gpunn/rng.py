"""Randomness comes from the host only: one numpy Generator per seed, draws moved to the device.

Drawing in float64 on the host and casting afterwards gives every backend and dtype the same numbers.
"""

from __future__ import annotations

import numpy as np


def host_rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)


def normal(backend, rng: np.random.Generator, shape, std: float = 1.0):
    """N(0, std) drawn on the host, moved to `backend`."""
    return backend.from_host(rng.standard_normal(shape) * std)


def uniform(backend, rng: np.random.Generator, shape, limit: float):
    """U(-limit, limit) drawn on the host, moved to `backend`."""
    return backend.from_host(rng.uniform(-limit, limit, shape))


def permutation(backend, rng: np.random.Generator, n: int):
    """A shuffled index vector 0..n-1, as a device int64 array."""
    return backend.from_host(rng.permutation(n).astype(np.int64))
