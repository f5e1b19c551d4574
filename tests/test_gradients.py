"""Finite-difference checks (float64, relative error < 1e-6) of every layer, loss and a whole model."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.nn import (
    GELU,
    MSE,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    CategoricalCrossEntropy,
    Dense,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    mlp,
)

EPS = 1e-6


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))


def numeric_gradient(f, x: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + EPS
        up = f(x)
        x[index] = old - EPS
        down = f(x)
        x[index] = old
        grad[index] = (up - down) / (2 * EPS)
    return grad


def away_from_kinks(rng, shape):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.3, x)  # ReLU-like layers are not differentiable at 0


@pytest.mark.parametrize(
    "make_layer",
    [ReLU, lambda: LeakyReLU(0.1), Sigmoid, Tanh, GELU, Softmax],
    ids=["ReLU", "LeakyReLU(0.1)", "Sigmoid", "Tanh", "GELU", "Softmax"],  # the same in every xdist worker
)
def test_activation_input_gradient(backend64, make_layer):
    b = backend64
    rng = np.random.default_rng(0)
    x = away_from_kinks(rng, (3, 5))
    weights = b.from_host(rng.standard_normal((3, 5)))
    layer = make_layer()
    layer.bind(b)

    def f(x_host):
        return b.to_scalar(b.xp.sum(layer.forward(b.from_host(x_host)) * weights))

    _, backprop = layer.begin_update(b.from_host(x))
    analytic = b.to_host(backprop(weights))
    assert relative_error(analytic, numeric_gradient(f, x.copy())) < 1e-6


def test_dense_gradients(backend64):
    b = backend64
    rng = np.random.default_rng(1)
    layer = Dense(4, 3)
    layer.bind(b, rng)
    x = rng.standard_normal((5, 4))
    upstream = b.from_host(rng.standard_normal((5, 3)))
    _, backprop = layer.begin_update(b.from_host(x))
    grad_x = b.to_host(backprop(upstream))

    def loss_with(param=None, value=None, x_host=x):
        if param is not None:
            saved, param.value = param.value, b.from_host(value)
        out = b.to_scalar(b.xp.sum(layer.forward(b.from_host(x_host)) * upstream))
        if param is not None:
            param.value = saved
        return out

    assert relative_error(grad_x, numeric_gradient(lambda v: loss_with(x_host=v), x.copy())) < 1e-6
    for param in layer.params:
        analytic = b.to_host(param.grad)
        numeric = numeric_gradient(lambda v, p=param: loss_with(p, v), b.to_host(param.value).copy())
        assert relative_error(analytic, numeric) < 1e-6, param.name


LOSS_CASES = [
    ("mse", MSE, lambda rng: rng.standard_normal((4, 3)), lambda rng: rng.standard_normal((4, 3))),
    (
        "bce",
        BinaryCrossEntropy,
        lambda rng: rng.uniform(0.1, 0.9, (4, 2)),
        lambda rng: rng.integers(0, 2, (4, 2)),
    ),
    (
        "bce_logits",
        BinaryCrossEntropyWithLogits,
        lambda rng: rng.standard_normal((4, 2)) * 3,
        lambda rng: rng.integers(0, 2, (4, 2)),
    ),
    (
        "cce",
        CategoricalCrossEntropy,
        lambda rng: rng.dirichlet(np.ones(3), 4),
        lambda rng: np.eye(3)[rng.integers(0, 3, 4)],
    ),
    (
        "softmax_ce",
        SoftmaxCrossEntropy,
        lambda rng: rng.standard_normal((4, 3)) * 2,
        lambda rng: np.eye(3)[rng.integers(0, 3, 4)],
    ),
]


@pytest.mark.parametrize(
    "name, loss_cls, make_input, make_target", LOSS_CASES, ids=[c[0] for c in LOSS_CASES]
)
def test_loss_gradients(backend64, name, loss_cls, make_input, make_target):
    b = backend64
    rng = np.random.default_rng(2)
    x, y = make_input(rng), make_target(rng).astype(np.float64)
    loss = loss_cls()
    target = b.from_host(y)
    analytic = b.to_host(loss(b, b.from_host(x), target)[1])
    numeric = numeric_gradient(lambda v: b.to_scalar(loss(b, b.from_host(v), target)[0]), x.copy())
    assert relative_error(analytic, numeric) < 1e-6


def test_whole_three_layer_model_gradients(backend64):
    b = backend64
    rng = np.random.default_rng(3)
    model = mlp([6, 5, 4, 3], activation="tanh", backend=b, seed=3)
    x = b.from_host(rng.standard_normal((7, 6)))
    labels = b.from_host(rng.integers(0, 3, 7))
    loss = SoftmaxCrossEntropy()
    outputs, backprop = model.begin_update(x)
    backprop(loss(b, outputs, labels)[1])
    for param in model.parameters():
        analytic = b.to_host(param.grad)

        def f(value, p=param):
            saved, p.value = p.value, b.from_host(value)
            out = b.to_scalar(loss(b, model.forward(x), labels)[0])
            p.value = saved
            return out

        assert relative_error(analytic, numeric_gradient(f, b.to_host(param.value).copy())) < 1e-6
