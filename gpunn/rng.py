"""Randomness comes from the host only: one numpy Generator per seed, draws moved to the device.

Drawing in float64 on the host and casting afterwards gives every backend and dtype the same numbers.
"""

from __future__ import annotations

import numpy as np


def host_rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)

