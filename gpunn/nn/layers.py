"""Layers: forward and hand-written backward side by side, calling only the backend.

A training pass calls `begin_update(x)`, which returns the output and a `backprop(grad)` closure over what
the backward pass needs (Thinc's style): the layer keeps nothing per call, so two passes in flight never
mix their inputs and inference (`forward(x)`) pins no batch on any layer. backprop sets each Param's
`.grad` and returns the input gradient.

Arrays are batch-first (N, features). Dense stores its weight as (in, out), so the forward pass is one
x @ W GEMM with no transpose, and backward is x.T @ g and g @ W.T (BLAS reads the transposes for free).
"""

from __future__ import annotations

import math

import numpy as np

from gpunn.nn.init import get_initializer, initial_bias


class Param:
    """A trainable array and its gradient, both on the layer's device (views of the model's flat buffers)."""

    __slots__ = ("name", "value", "grad", "owner")

    def __init__(self, name: str, value):
        self.name = name
        self.value = value
        self.grad = None
        self.owner = None  # the ParameterBuffer whose views value and grad are


class Layer:
    params: tuple[Param, ...] = ()
    backend = None

    def bind(self, backend, rng: np.random.Generator | None = None) -> None:
        """Attach to a backend; layers with weights draw them from `rng` on first bind."""
        self.backend = backend

    def forward(self, x):
        """Inference: the output alone (the backward context is dropped at once)."""
        return self.begin_update(x)[0]

    def begin_update(self, x, step: int | None = None, first_row: int = 0):
        """(output, backprop) for a training pass. step and first_row place the call in training (the
        global step; where x starts in the global batch) for layers that draw randomness; None: inference."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"type": type(self).__name__}

    @classmethod
    def from_description(cls, description: dict) -> Layer:
        """Inverse of describe(); a description that makes no sense is a ValueError naming the field."""
        return cls()

    def parameter_shapes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(name, shape) of each parameter, in order, known before any weight exists (checkpoint guards)."""
        return ()

    def input_features(self) -> int | None:
        """The features this layer requires (None: it takes any width)."""
        return None

    def output_features(self, in_features: int | None) -> int | None:
        """Features out for `in_features` in (None: not known yet); a mismatch is a ValueError."""
        return in_features

    def summary_tag(self) -> str | None:
        """This layer's word in a one-line architecture summary ('784-128-10 relu'); None: no word."""
        return type(self).__name__.lower()


def _positive_int(description: dict, key: str) -> int:
    value = description.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"a {description.get('type')} layer needs a positive integer {key!r}, got {description}"
        )
    return value


class Dense(Layer):
    """y = x @ W + b, with W of shape (in_features, out_features).

    x may be a sparse matrix from backend.sparse_from_host (text features): the product stays sparse
    (backend.sparse_linear), and so does the weight gradient (backend.sparse_weight_grad).
    """

    def __init__(self, in_features: int, out_features: int, init: str = "he"):
        self.in_features, self.out_features, self.init = int(in_features), int(out_features), init
        self.weight: Param | None = None
        self.bias: Param | None = None
        self.need_input_grad = True  # the model turns this off for the first layer: nobody reads it

    @property
    def params(self) -> tuple[Param, ...]:
        return (self.weight, self.bias)

    def bind(self, backend, rng=None) -> None:
        if self.weight is None:
            rng = rng if rng is not None else np.random.default_rng(0)
            weight = get_initializer(self.init)(rng, self.in_features, self.out_features)
            bias = initial_bias(self.init, rng, self.in_features, self.out_features)
            self.weight = Param("weight", backend.from_host(weight))
            self.bias = Param("bias", backend.from_host(bias))
        elif backend is not self.backend:
            for p in self.params:
                p.value = backend.from_host(self.backend.to_host(p.value))
                p.grad = None
        self.backend = backend

    def forward(self, x):
        if self.backend.is_sparse(x):
            return self.backend.sparse_linear(x, self.weight.value, self.bias.value)
        return self.backend.linear(x, self.weight.value, self.bias.value)

    def begin_update(self, x, step=None, first_row=0):
        if self.backend.is_sparse(x):
            return self.forward(x), self._sparse_backprop(x)
        return self.forward(x), self._backprop(x, self.backend.linear_backward)

    def forward_relu(self, x):
        """forward(x) then a ReLU in one backend call (a GPU fuses the bias add into the ReLU)."""
        if self.backend.is_sparse(x):
            return self.backend.relu(self.forward(x))
        return self.backend.linear_relu(x, self.weight.value, self.bias.value)

    def begin_update_relu(self, x):
        """begin_update for this layer and a ReLU after it: one backend call each way (on the way back a GPU
        masks and sums the bias at once)."""
        y = self.forward_relu(x)
        if self.backend.is_sparse(x):
            backprop = self._sparse_backprop(x)
            return y, lambda grad: backprop(self.backend.relu_backward(grad, y))
        return y, self._backprop(x, self.backend.relu_linear_backward, y)

    def _sparse_backprop(self, x):
        """The backward closure for a sparse input x: its weight gradient is a sparse product too."""

        def backprop(grad, bias_grad=None):
            backend, weight, bias = self.backend, self.weight, self.bias
            weight.grad = backend.sparse_weight_grad(x, grad)
            bias.grad = backend.column_sums(grad) if bias_grad is None else bias_grad
            return backend.xp.matmul(grad, weight.value.T) if self.need_input_grad else None

        return backprop

    def _backprop(self, x, backend_backward, *relu_output):
        """The closure that writes this layer's gradients (into the flat buffer where the backend writes in
        place) and returns the input's, from the input x of its own pass."""

        def backprop(grad, bias_grad=None):
            """bias_grad: the bias gradient when the caller already has it (a loss summed its gradient's
            columns); only a Dense without a ReLU after it takes one."""
            weight, bias = self.weight, self.bias
            given = {} if bias_grad is None else {"bias_grad": bias_grad}
            grad_x, weight.grad, bias.grad = backend_backward(
                x,
                weight.value,
                grad,
                *relu_output,
                self.need_input_grad,
                out=(weight.grad, bias.grad),
                **given,
            )
            return grad_x

        return backprop

    def describe(self) -> dict:
        return {"type": "Dense", "in": self.in_features, "out": self.out_features, "init": self.init}

    @classmethod
    def from_description(cls, description: dict) -> Dense:
        fan_in, fan_out = _positive_int(description, "in"), _positive_int(description, "out")
        return cls(fan_in, fan_out, description.get("init", "he"))

    def parameter_shapes(self):
        return (("weight", (self.in_features, self.out_features)), ("bias", (self.out_features,)))

    def input_features(self):
        return self.in_features

    def output_features(self, in_features):
        if in_features is not None and in_features != self.in_features:
            raise ValueError(f"layer sizes do not chain ({in_features} then {self.in_features})")
        return self.out_features

    def summary_tag(self):
        return None


class Identity(Layer):
    """y = x: scikit-learn's "identity" activation, and a regressor's output."""

    def begin_update(self, x, step=None, first_row=0):
        return x, lambda grad: grad


class Exp(Layer):
    """y = exp(x): the output of a Poisson regressor (the log link's inverse)."""

    def begin_update(self, x, step=None, first_row=0):
        y = self.backend.xp.exp(x)
        return y, lambda grad: grad * y


class ReLU(Layer):
    def begin_update(self, x, step=None, first_row=0):
        y = self.backend.relu(x)
        return y, lambda grad: self.backend.relu_backward(grad, y)


class LeakyReLU(Layer):
    def __init__(self, alpha: float = 0.01):
        self.alpha = float(alpha)

    def begin_update(self, x, step=None, first_row=0):
        where, positive = self.backend.xp.where, x > 0
        return where(positive, x, self.alpha * x), lambda grad: where(positive, grad, self.alpha * grad)

    def describe(self) -> dict:
        return {"type": "LeakyReLU", "alpha": self.alpha}

    @classmethod
    def from_description(cls, description: dict) -> LeakyReLU:
        return cls(description.get("alpha", 0.01))


class Sigmoid(Layer):
    """1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2 so it never overflows."""

    def begin_update(self, x, step=None, first_row=0):
        y = 0.5 * (1.0 + self.backend.xp.tanh(0.5 * x))
        return y, lambda grad: grad * y * (1.0 - y)


class Tanh(Layer):
    def begin_update(self, x, step=None, first_row=0):
        y = self.backend.xp.tanh(x)
        return y, lambda grad: grad * (1.0 - y * y)


_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


class GELU(Layer):
    """The tanh approximation 0.5 x (1 + tanh(k (x + c x^3))), k = sqrt(2/pi), and its exact derivative."""

    def begin_update(self, x, step=None, first_row=0):
        t = self.backend.xp.tanh(_GELU_K * (x + _GELU_C * x * x * x))

        def backprop(grad):
            local = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_K * (1.0 + 3.0 * _GELU_C * x * x)
            return grad * local

        return 0.5 * x * (1.0 + t), backprop


class Softmax(Layer):
    """Row-wise softmax; for training a classifier prefer SoftmaxCrossEntropy on logits (fused, stable)."""

    def begin_update(self, x, step=None, first_row=0):
        y = self.backend.softmax(x)
        return y, lambda grad: y * (grad - self.backend.xp.sum(grad * y, axis=1, keepdims=True))


class Dropout(Layer):
    """Inverted dropout: while training, zero each input with probability p and scale the rest by 1/(1-p).

    Masks are keyed by (seed, position in the model, training step): Sequential sets the seed and position
    once and passes the step to begin_update, so masks are the same on every backend and a resumed run
    recomputes them. With no step (inference) it is identity.
    """

    seed, stream = 0, 0

    def __init__(self, p: float = 0.5):
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p!r}")
        self.p = float(p)

    def begin_update(self, x, step=None, first_row=0):
        if step is None or self.p == 0.0:
            return x, lambda grad: grad
        mask = self.backend.dropout_mask(x.shape, self.p, (self.seed, self.stream, step), first_row)
        return x * mask, lambda grad: grad * mask

    def describe(self) -> dict:
        return {"type": "Dropout", "p": self.p}

    @classmethod
    def from_description(cls, description: dict) -> Dropout:
        return cls(description.get("p", 0.5))


ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "gelu": GELU,
    "identity": Identity,
    "softmax": Softmax,
}

LAYER_TYPES = {
    cls.__name__: cls
    for cls in (Dense, Identity, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Softmax, Exp, Dropout)
}


def activation(name: str) -> Layer:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}: choose from {', '.join(ACTIVATIONS)}") from None


def layer_from_description(description: dict) -> Layer:
    """Inverse of Layer.describe(), used to rebuild a model from a checkpoint header."""
    kind = description.get("type") if isinstance(description, dict) else None
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}")
    return LAYER_TYPES[kind].from_description(description)


def summary_of(layers: list[Layer]) -> str:
    """'784-128-64-10 relu': the sizes of the layers that set a width, then the words of the others."""
    sized = [layer for layer in layers if layer.input_features() is not None]
    sizes = [sized[0].input_features()] + [layer.output_features(None) for layer in sized] if sized else []
    tags = sorted({tag for tag in (layer.summary_tag() for layer in layers) if tag})
    return " ".join(part for part in ("-".join(map(str, sizes)), "/".join(tags)) if part)
