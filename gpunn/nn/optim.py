"""Optimizers. One update rule per optimizer runs over the model's whole flat parameter buffer at once.

State (velocity, Adam's moments) is one flat array per name on the parameters' device, laid out like the
parameter buffer; checkpoints keep it per parameter (`name.index`), as host arrays. Weight decay (L2 added
to the gradient) lives in Backend.decayed, which every update rule calls.
"""

from __future__ import annotations

import math

import numpy as np

from gpunn.nn.flat import ParameterBuffer, split


class Optimizer:
    """Updates a model's ParameterBuffer (or a list of Params) from its gradient; `lr` may change between steps."""

    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rate must be a finite number > 0, got {lr!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight decay must be >= 0, got {weight_decay!r}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.steps = 0
        self.state: dict = {}  # name -> one flat device array, created on the first step or by loading
        self.shapes: list[tuple[int, ...]] = []  # the per-parameter layout of the state buffers

    def step(self, params, backend=None) -> None:
        """One update of every parameter: `params` is a ParameterBuffer or a list of Params (with `.grad`)."""
        if backend is None and not isinstance(params, ParameterBuffer):
            raise TypeError(
                "Optimizer.step: pass backend= with a list of Params (a ParameterBuffer knows its own)"
            )
        buffer = ParameterBuffer.of(params, backend)  # a ParameterBuffer brings its own backend
        backend = buffer.backend
        buffer.collect_gradient()
        if any(name not in self.state for name in self.state_names):
            self.state = {name: backend.zeros((buffer.size,)) for name in self.state_names}
            self.shapes = list(buffer.shapes)
        self.steps += 1
        buffer.set_values(self._update(backend, buffer.values, buffer.gradient))

    def _update(self, backend, values, gradient):
        """New flat values from flat values and gradient (updating self.state); in place where it can."""
        raise NotImplementedError

    def state_dict(self, backend) -> dict[str, np.ndarray]:
        """Host copies of the step count and every state array, per parameter, named `name.index`."""
        out = {"steps": np.array(self.steps, dtype=np.int64)}
        for name in self.state_names:
            if name in self.state:
                for index, array in enumerate(split(backend.to_host(self.state[name]), self.shapes)):
                    out[f"{name}.{index}"] = array
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], backend) -> None:
        self.steps = int(state["steps"])
        self.state = {}
        for name in self.state_names:
            keys = sorted((k for k in state if k.startswith(f"{name}.")), key=lambda k: int(k.split(".")[1]))
            if keys:
                self.shapes = [tuple(state[k].shape) for k in keys]
                self.state[name] = backend.from_host(np.concatenate([np.ravel(state[k]) for k in keys]))


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

    def _update(self, backend, values, gradient):
        if not self.momentum:
            return backend.sgd_update(values, gradient, self.lr, self.weight_decay)
        values, self.state["velocity"] = backend.momentum_update(
            values, gradient, self.state["velocity"], self.lr, self.momentum, self.nesterov, self.weight_decay
        )
        return values


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

    def _update(self, backend, values, gradient):
        values, self.state["m"], self.state["v"] = backend.adam_update(
            values,
            gradient,
            self.state["m"],
            self.state["v"],
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.steps,
            self.weight_decay,
        )
        return values


# The one registry of optimizer names (config validation, the CLI's --optimizer help, make_optimizer):
# name -> (lr, momentum, weight_decay) -> Optimizer.
OPTIMIZERS = {
    "sgd": lambda lr, momentum, wd: SGD(lr, weight_decay=wd),
    "momentum": lambda lr, momentum, wd: SGD(lr, momentum=momentum, weight_decay=wd),
    "nesterov": lambda lr, momentum, wd: SGD(lr, momentum=momentum, nesterov=True, weight_decay=wd),
    "adam": lambda lr, momentum, wd: Adam(lr, weight_decay=wd),
}
USES_MOMENTUM = ("momentum", "nesterov")  # the optimizers that need momentum > 0


def make_optimizer(name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    """An optimizer of OPTIMIZERS by name (the CLI's --optimizer)."""
    try:
        factory = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}: choose from {', '.join(OPTIMIZERS)}") from None
    return factory(lr, momentum, weight_decay)
