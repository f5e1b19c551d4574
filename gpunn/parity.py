"""The same short training on two devices, step by step: the contract that makes CPU/GPU parity testable."""

from __future__ import annotations

import numpy as np

from gpunn.backend import get_backend
from gpunn.nn import make_optimizer, mlp
from gpunn.nn.step import train_step


def train_steps(
    device: str,
    dtype: str = "float32",
    steps: int = 20,
    seed: int = 5,
    optimizer: str = "sgd",
    sizes=(20, 16, 12, 5),
    batch: int = 16,
) -> tuple[list[float], list[np.ndarray]]:
    """Per-step losses and final weights of `steps` SGD steps on seeded random data."""
    backend = get_backend(device, dtype)
    rng = np.random.default_rng(seed)
    x_all = rng.standard_normal((steps * batch, sizes[0]))
    y_all = rng.integers(0, sizes[-1], steps * batch)
    model = mlp(list(sizes), backend=backend, seed=seed)
    opt = make_optimizer(optimizer, 0.05)
    losses = []
    for step in range(steps):
        rows = slice(step * batch, (step + 1) * batch)
        labels = backend.from_host(y_all[rows])
        result = train_step(model, opt, backend.from_host(x_all[rows]), labels, labels=labels)
        losses.append(backend.to_scalar(result.loss))
    return losses, model.get_weights()


def compare(
    device_a: str, device_b: str, dtype: str = "float32", steps: int = 20, optimizer: str = "sgd"
) -> dict:
    """Largest per-step loss difference and largest final-weight difference between two devices."""
    losses_a, weights_a = train_steps(device_a, dtype, steps, optimizer=optimizer)
    losses_b, weights_b = train_steps(device_b, dtype, steps, optimizer=optimizer)
    return {
        "devices": [device_a, device_b],
        "dtype": dtype,
        "steps": steps,
        "max_loss_diff": float(max(abs(a - b) for a, b in zip(losses_a, losses_b, strict=True))),
        "max_weight_diff": float(max(np.abs(a - b).max() for a, b in zip(weights_a, weights_b, strict=True))),
        "losses": [losses_a, losses_b],
    }
