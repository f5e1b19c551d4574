"""The seed's worked examples, asserted on every backend. Where the seed's printed number disagrees with
the math, the math wins and the test says so (values recomputed in closed form right here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpunn.nn import (
    MSE,
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Dense,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    mlp,
)


def run_layer(backend, layer, values):
    layer.bind(backend)
    return backend.to_host(layer.forward(backend.from_host(np.array([values], dtype=np.float64))))[0]


def assert_printed(actual, printed: list[str]) -> None:
    """Each value within one unit of the seed's last printed digit (it rounds some, truncates others)."""
    for value, text in zip(actual, printed, strict=True):
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert abs(value - float(text)) <= 10.0**-decimals, (value, text)


def test_activation_golden_values(backend):
    np.testing.assert_array_equal(run_layer(backend, ReLU(), [-2, -1, 0, 1, 2, 3]), [0, 0, 0, 1, 2, 3])
    assert_printed(
        run_layer(backend, Sigmoid(), [-5, -2, 0, 2, 5]), ["0.007", "0.12", "0.5", "0.88", "0.993"]
    )
    assert_printed(run_layer(backend, Tanh(), [-5, -2, 0, 2, 5]), ["-0.999", "-0.96", "0", "0.96", "0.999"])
    assert_printed(run_layer(backend, Softmax(), [2.0, 1.0, 0.1]), ["0.659", "0.242", "0.099"])
    # and tightly against the closed forms
    x = np.array([-5.0, -2, 0, 2, 5])
    np.testing.assert_allclose(run_layer(backend, Sigmoid(), x), 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(run_layer(backend, Tanh(), x), np.tanh(x), rtol=1e-6)


def two_two_one(backend):
    """The seed's 2-2-1 net: ReLU hidden layer, sigmoid output; the seed writes W as (out, in)."""
    model = Sequential([Dense(2, 2), ReLU(), Dense(2, 1), Sigmoid()], backend)
    model.set_weights(
        [
            np.array([[0.4, 0.3], [-0.2, 0.6]]).T,
            np.array([0.1, -0.1]),
            np.array([[0.7, 0.5]]).T,
            np.array([0.2]),
        ]
    )
    return model


def test_two_two_one_forward_backward_and_step(backend64):
    b = backend64
    model = two_two_one(b)
    x = b.from_host(np.array([[0.5, 0.8]]))
    output, backprop = model.begin_update(x)
    np.testing.assert_array_equal(b.to_host(output), b.to_host(model.forward(x)))
    hidden_pre = b.to_host(model.layers[0].forward(x))
    np.testing.assert_allclose(hidden_pre, [[0.54, 0.28]], atol=1e-12)
    z_out = 0.7 * 0.54 + 0.5 * 0.28 + 0.2  # 0.718
    p = 1 / (1 + math.exp(-z_out))  # 0.67217; the seed prints 0.6723 (a rounding slip of 1.3e-4)
    assert b.to_scalar(output[0, 0]) == pytest.approx(p, abs=1e-12)
    assert b.to_scalar(output[0, 0]) == pytest.approx(0.6723, abs=2e-4)

    loss, grad = BinaryCrossEntropy()(b, output, b.from_host(np.array([[1.0]])))
    assert b.to_scalar(loss) == pytest.approx(-math.log(p), rel=1e-9)
    backprop(grad)
    # gradient at the output pre-activation is p - y: -0.3278 (the seed prints -0.3277, from its 0.6723)
    z_out_dev = model.layers[2].forward(model.layers[1].forward(model.layers[0].forward(x)))
    grad_z_out = b.to_host(model.layers[3].begin_update(z_out_dev)[1](grad))[0, 0]
    assert grad_z_out == pytest.approx(p - 1, rel=1e-6)
    grad_w_out = b.to_host(model.layers[2].weight.grad)[:, 0]
    np.testing.assert_allclose(grad_w_out, [-0.1770, -0.0918], atol=5e-5)
    np.testing.assert_allclose(grad_w_out, [(p - 1) * 0.54, (p - 1) * 0.28], rtol=1e-6)

    from gpunn.nn import SGD

    SGD(lr=0.01).step(model.parameters(), b)
    updated = b.to_host(model.layers[2].weight.value)[:, 0]
    np.testing.assert_allclose(updated, [0.7 - 0.01 * (p - 1) * 0.54, 0.5 - 0.01 * (p - 1) * 0.28], rtol=1e-9)
    np.testing.assert_allclose(updated, [0.701770, 0.500918], atol=5e-6)


def loss_value(backend, loss, y, p):
    y_dev = backend.from_host(np.array([y], dtype=np.float64))
    p_dev = backend.from_host(np.array([p], dtype=np.float64))
    return backend.to_scalar(loss(backend, p_dev, y_dev)[0])


def test_loss_golden_values(backend64):
    b = backend64
    assert loss_value(b, MSE(), [300000, 450000, 200000], [310000, 420000, 215000]) == pytest.approx(
        408_333_333.33, rel=1e-9
    )
    assert loss_value(b, CategoricalCrossEntropy(), [1, 0, 0], [0.7, 0.2, 0.1]) == pytest.approx(
        0.3567, abs=5e-5
    )


def test_bce_golden_values_from_the_math(backend64):
    # The seed prints 0.1643 and 1.8971; the mean binary cross-entropy of these vectors is 0.19763 and
    # 1.85465 (computed below term by term), so we assert the math, not the seed's misprint.
    y = [1, 0, 1, 1]
    for p in ([0.9, 0.1, 0.8, 0.7], [0.1, 0.9, 0.2, 0.3]):
        expected = -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for t, q in zip(y, p, strict=True)) / 4
        assert loss_value(backend64, BinaryCrossEntropy(), y, p) == pytest.approx(expected, rel=1e-9)
    assert loss_value(backend64, BinaryCrossEntropy(), y, [0.9, 0.1, 0.8, 0.7]) == pytest.approx(
        0.1976, abs=5e-5
    )
    assert loss_value(backend64, BinaryCrossEntropy(), y, [0.1, 0.9, 0.2, 0.3]) == pytest.approx(
        1.8546, abs=5e-5
    )


def test_headline_mlp_parameter_count_and_shapes(backend):
    model = mlp([784, 128, 64, 10], backend=backend)
    assert model.num_parameters() == 109386
    assert model.shapes() == [(784, 128), (128,), (128, 64), (64,), (64, 10), (10,)]


def test_he_init_statistics():
    weights = mlp([784, 512, 10], backend="cpu", dtype="float64", seed=1).get_weights()
    assert weights[0].std() == pytest.approx(math.sqrt(2 / 784), rel=0.01)
    assert abs(weights[0].mean()) < 1e-3
    assert not weights[1].any()  # biases start at zero
