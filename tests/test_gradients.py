"""Finite-difference checks (float64, relative error < 1e-6) of every layer, loss and a whole model."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.nn import (
    GELU,
    MSE,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    BinaryLogLoss,
    CategoricalCrossEntropy,
    Dense,
    Exp,
    HalfSquaredError,
    Identity,
    LeakyReLU,
    LogLoss,
    PoissonLoss,
    ReLU,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    mlp,
)
from gpunn.nn.flat import split
from gpunn.nn.losses import WeightedTargets
from gpunn.nn.penalty import L2Penalty
from gpunn.nn.step import backward

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
    [ReLU, lambda: LeakyReLU(0.1), Sigmoid, Tanh, GELU, Softmax, Identity, Exp],
    ids=[
        "ReLU",
        "LeakyReLU(0.1)",
        "Sigmoid",
        "Tanh",
        "GELU",
        "Softmax",
        "Identity",
        "Exp",
    ],  # the same in every xdist worker
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
    # scikit-learn's losses, on the output layer's pre-activation (their link applied inside)
    (
        "half_squared",  # one output: see HalfSquaredError on scikit-learn's gradient for several
        HalfSquaredError,
        lambda rng: rng.standard_normal((4, 1)),
        lambda rng: rng.standard_normal((4, 1)),
    ),
    ("poisson", PoissonLoss, lambda rng: rng.standard_normal((4, 2)), lambda rng: rng.poisson(2.0, (4, 2))),
    (
        "log_loss",
        LogLoss,
        lambda rng: rng.standard_normal((4, 3)) * 2,
        lambda rng: np.eye(3)[rng.integers(0, 3, 4)],
    ),
    (
        "binary_log_loss",
        BinaryLogLoss,
        lambda rng: rng.standard_normal((4, 2)) * 2,
        lambda rng: rng.integers(0, 2, (4, 2)),
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


@pytest.mark.parametrize("loss_cls", [HalfSquaredError, PoissonLoss, LogLoss, BinaryLogLoss], ids=str)
def test_weighted_linked_losses_average_over_the_weight_sum(backend64, loss_cls):
    """Row weights: the loss is the weighted mean (a row of weight 2 counts as that row twice), and its
    gradient is the finite difference of that mean."""
    b, rng = backend64, np.random.default_rng(4)
    z = rng.standard_normal((3, 1 if loss_cls is HalfSquaredError else 3))
    y = (
        rng.standard_normal((3, 1))
        if loss_cls is HalfSquaredError
        else np.eye(3)[[0, 2, 1]]
        if loss_cls is LogLoss
        else rng.integers(0, 2, (3, 3)).astype(np.float64)
    )
    weights = np.array([2.0, 1.0, 0.5])
    targets = WeightedTargets(b.from_host(y), b.from_host(weights))
    loss = loss_cls()
    analytic = b.to_host(loss(b, b.from_host(z), targets)[1])
    numeric = numeric_gradient(lambda v: b.to_scalar(loss(b, b.from_host(v), targets)[0]), z.copy())
    assert relative_error(analytic, numeric) < 1e-6
    repeated = WeightedTargets(b.from_host(y[[0, 0, 1, 2]]), b.from_host(np.array([1.0, 1.0, 1.0, 0.5])))
    twice = b.to_scalar(loss(b, b.from_host(z[[0, 0, 1, 2]]), repeated)[0])
    assert b.to_scalar(loss(b, b.from_host(z), targets)[0]) == pytest.approx(twice, rel=1e-12)


def test_l2_penalty_adds_alpha_on_weights_only_over_the_weight_sum(backend64):
    """L2Penalty's loss and its hook's gradient (weights, not biases) against finite differences."""
    b, rng = backend64, np.random.default_rng(6)
    model = mlp([3, 4, 1], activation="tanh", backend=b, seed=1)
    x = b.from_host(rng.standard_normal((5, 3)))
    targets = WeightedTargets(b.from_host(rng.standard_normal((5, 1))), b.from_host(rng.uniform(0.5, 2, 5)))
    loss = L2Penalty(HalfSquaredError(), model, alpha=0.7)
    host = [rng.standard_normal(w.shape) for w in model.get_weights()]  # biases too: not zero
    model.set_weights(host)

    def loss_at(flat):
        model.set_weights(split(flat, [w.shape for w in host]))
        return b.to_scalar(backward(model, x, targets, loss=loss).loss)

    flat = np.concatenate([w.ravel() for w in host])
    numeric = numeric_gradient(loss_at, flat.copy())
    model.set_weights(host)
    backward(model, x, targets, loss=loss)
    loss.gradient_hook(model.buffer)
    analytic = b.to_host(model.buffer.gradient)
    assert relative_error(analytic, numeric) < 1e-6
    plain = L2Penalty(HalfSquaredError(), model, alpha=0.0)
    backward(model, x, targets, loss=plain)
    without = b.to_host(model.buffer.gradient)
    biases = np.concatenate([np.full(w.size, w.ndim == 1) for w in host])
    np.testing.assert_array_equal(analytic[biases], without[biases])  # biases are not penalised
    assert not np.allclose(analytic[~biases], without[~biases])


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
