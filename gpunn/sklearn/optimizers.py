"""scikit-learn's stochastic solvers (learning-rate schedules, stopping rules) driving gpunn's optimizers.

The update itself is gpunn.nn.optim's SGD/Adam on the device; this wrapper only sets its `lr` the way
sklearn.neural_network's SGDOptimizer/AdamOptimizer do, and carries the state across devices and pickles.
"""

from __future__ import annotations

import numpy as np

from gpunn.nn.optim import SGD, Adam


class StochasticSolver:
    """`learning_rate`, `iteration_ends` and `trigger_stopping` as scikit-learn's optimizers have them."""

    def __init__(self, estimator):
        self.solver = estimator.solver
        self.learning_rate_init = float(estimator.learning_rate_init)
        self.lr_schedule = estimator.learning_rate if self.solver == "sgd" else "constant"
        self.power_t = float(estimator.power_t)
        if self.solver == "adam":
            self.inner = Adam(self.learning_rate_init, estimator.beta_1, estimator.beta_2, estimator.epsilon)
        elif estimator.momentum > 0:
            self.inner = SGD(
                self.learning_rate_init, momentum=estimator.momentum, nesterov=estimator.nesterovs_momentum
            )
        else:
            self.inner = SGD(self.learning_rate_init)
        self.backend = None  # the device the state lives on; None: host arrays (new or unpickled)

    @property
    def learning_rate(self) -> float:
        return self.inner.lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        """gpunn's velocity is sklearn's divided by -lr: rescale it so past steps keep their size."""
        velocity = self.inner.state.get("velocity")  # one flat array laid out like the parameter buffer
        if velocity is not None:
            self.inner.state["velocity"] = velocity * (self.inner.lr / value)
        self.inner.lr = float(value)

    def step(self, buffer) -> None:
        """The update train_step calls with the network's ParameterBuffer."""
        self.to_backend(buffer.backend)
        self.inner.step(buffer)

    def iteration_ends(self, time_step: int) -> None:
        if self.lr_schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose) -> bool:
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate = self.learning_rate / 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.learning_rate:f}")
        return False

    def to_backend(self, backend) -> None:
        """Move the flat state buffers (velocity, Adam moments) to `backend`, through the host."""
        if self.backend is backend:
            return
        for name, flat in self.inner.state.items():
            host = flat if self.backend is None else self.backend.to_host(flat)
            self.inner.state[name] = backend.from_host(np.asarray(host))
        self.backend = backend

    def __getstate__(self):
        """Host arrays only, so a pickle never carries device objects."""
        state = self.__dict__.copy()
        if self.backend is not None:
            inner = self.inner.__class__.__new__(self.inner.__class__)
            inner.__dict__.update(self.inner.__dict__)
            inner.state = {name: self.backend.to_host(flat) for name, flat in self.inner.state.items()}
            state["inner"], state["backend"] = inner, None
        return state
