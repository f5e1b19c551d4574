"""Optimizers. State lives on the parameters' device and serialises to host arrays for checkpoints.

Weight decay is L2 added to the gradient (wd * w) before the update, for every optimizer.
"""

from __future__ import annotations

import math

import numpy as np


class Optimizer:
    """Updates a list of Params (their `.value`, from their `.grad`); `lr` may be changed between steps."""

    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rate must be a finite number > 0, got {lr!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight decay must be >= 0, got {weight_decay!r}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.steps = 0
        self.state: dict[str, list] = {name: [] for name in self.state_names}

    def step(self, params, backend) -> None:
        if self.state_names and not self.state[self.state_names[0]]:
            self.state = {name: [backend.xp.zeros_like(p.value) for p in params] for name in self.state_names}
        self.steps += 1
        for index, param in enumerate(params):
            param.value = self._update(backend, index, param.value, param.grad)

    def _decayed(self, value, grad):
        return grad + self.weight_decay * value if self.weight_decay else grad

    def _update(self, backend, index: int, value, grad):
        raise NotImplementedError

    def state_dict(self, backend) -> dict[str, np.ndarray]:
        """Host copies of the step count and every state array, named `name.index`."""
        out = {"steps": np.array(self.steps, dtype=np.int64)}
        for name, arrays in self.state.items():
            for index, array in enumerate(arrays):
                out[f"{name}.{index}"] = backend.to_host(array)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], backend) -> None:
        self.steps = int(state["steps"])
        for name in self.state_names:
            keys = sorted((k for k in state if k.startswith(f"{name}.")), key=lambda k: int(k.split(".")[1]))
            self.state[name] = [backend.from_host(state[k]) for k in keys]


class SGD(Optimizer):
    """w -= lr * g (the seed's rule); with momentum mu: v = mu v + g, w -= lr v; Nesterov: w -= lr (g + mu v)."""

    def __init__(
        self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0
    ):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov needs a momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.state_names = ("velocity",) if momentum else ()
        super().__init__(lr, weight_decay)

    def _update(self, backend, index, value, grad):
        if not self.momentum:
            return backend.sgd_update(value, self._decayed(value, grad), self.lr)
        value, self.state["velocity"][index] = backend.momentum_update(
            value,
            grad,
            self.state["velocity"][index],
            self.lr,
            self.momentum,
            self.nesterov,
            self.weight_decay,
        )
        return value


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction: w -= lr * m_hat / (sqrt(v_hat) + eps)."""

    state_names = ("m", "v")

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        super().__init__(lr, weight_decay)

    def _update(self, backend, index, value, grad):
        xp = backend.xp
        grad = self._decayed(value, grad)
        m = self.beta1 * self.state["m"][index] + (1.0 - self.beta1) * grad
        v = self.beta2 * self.state["v"][index] + (1.0 - self.beta2) * grad * grad
        self.state["m"][index], self.state["v"][index] = m, v
        m_hat_scale = 1.0 / (1.0 - self.beta1**self.steps)
        v_hat_scale = 1.0 / (1.0 - self.beta2**self.steps)
        return value - self.lr * (m * m_hat_scale) / (xp.sqrt(v * v_hat_scale) + self.eps)


def make_optimizer(name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    """sgd | momentum | nesterov | adam, by name (the CLI's --optimizer)."""
    if name == "sgd":
        return SGD(lr, weight_decay=weight_decay)
    if name == "momentum":
        return SGD(lr, momentum=momentum, weight_decay=weight_decay)
    if name == "nesterov":
        return SGD(lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return Adam(lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: choose from sgd, momentum, nesterov, adam")
