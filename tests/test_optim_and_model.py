"""Optimizers on known problems, backend parity of training, and the model's input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_usable

from gpunn import parity
from gpunn.backend import get_backend
from gpunn.errors import DeviceMismatchError, DTypeMismatchError, ShapeError
from gpunn.nn import SGD, Adam, Param, Sequential, SoftmaxCrossEntropy, make_optimizer, mlp


def minimise_quadratic(backend, optimizer, steps):
    """f(w) = 0.5 * sum(a * (w - t)^2), a convex bowl with minimum at t."""
    a = backend.from_host(np.array([1.0, 4.0, 0.5]))
    target = backend.from_host(np.array([3.0, -2.0, 1.0]))
    param = Param("w", backend.from_host(np.zeros(3)))
    for _ in range(steps):
        param.grad = a * (param.value - target)
        optimizer.step([param], backend)
    return backend.to_host(param.value)


def test_a_list_of_params_needs_the_backend_a_buffer_brings_its_own(backend):
    """Only a ParameterBuffer knows its backend: a bare list without backend= is one clear TypeError."""
    param = Param("w", backend.from_host(np.zeros(3)))
    param.grad = backend.from_host(np.ones(3))
    with pytest.raises(TypeError) as err:
        SGD(0.5).step([param])
    assert str(err.value) == "Optimizer.step: pass backend= with a list of Params (a ParameterBuffer knows its own)"
    SGD(0.5).step([param], backend)
    np.testing.assert_allclose(backend.to_host(param.value), [-0.5, -0.5, -0.5])


@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(0.2),
        lambda: SGD(0.1, momentum=0.9),
        lambda: SGD(0.1, momentum=0.9, nesterov=True),
        lambda: Adam(0.1),
    ],
    ids=["sgd", "momentum", "nesterov", "adam"],
)
def test_optimizers_converge_on_a_convex_quadratic(backend64, make):
    np.testing.assert_allclose(minimise_quadratic(backend64, make(), 400), [3.0, -2.0, 1.0], atol=1e-4)


def test_adam_first_steps_match_hand_computation(backend64):
    b = backend64
    param = Param("w", b.from_host(np.array([1.0, -1.0])))
    adam = Adam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    grads = [np.array([0.5, -2.0]), np.array([0.25, 1.0])]
    m = v = np.zeros(2)
    w = np.array([1.0, -1.0])
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        param.grad = b.from_host(g)
        adam.step([param], b)
        np.testing.assert_allclose(b.to_host(param.value), w, rtol=1e-12)
        if t == 1:  # step 1 of Adam moves every weight by lr * sign(g) (to within eps)
            np.testing.assert_allclose(b.to_host(param.value), [0.9, -0.9], rtol=1e-7)


def test_weight_decay_adds_l2_to_the_gradient(backend64):
    b = backend64
    param = Param("w", b.from_host(np.array([2.0])))
    param.grad = b.from_host(np.array([0.0]))
    SGD(0.1, weight_decay=0.5).step([param], b)
    assert b.to_scalar(param.value[0]) == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)


def test_optimizer_state_round_trips_through_host(backend64):
    b = backend64
    opt = make_optimizer("momentum", 0.1)
    minimise_quadratic(b, opt, 3)
    state = opt.state_dict(b)
    assert all(isinstance(v, np.ndarray) for v in state.values()) and int(state["steps"]) == 3
    fresh = make_optimizer("momentum", 0.1)
    fresh.load_state_dict(state, get_backend("cpu", "float64"))
    np.testing.assert_array_equal(
        fresh.state_dict(get_backend("cpu", "float64"))["velocity.0"], state["velocity.0"]
    )


@pytest.mark.parametrize("bad", [dict(lr=0), dict(lr=float("nan")), dict(lr=0.1, momentum=1.0)])
def test_bad_optimizer_settings(bad):
    with pytest.raises(ValueError):
        SGD(**bad)


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
def test_numpy_and_strict_training_agree_to_1e12(optimizer):
    result = parity.compare("cpu", "strict", "float64", optimizer=optimizer)
    assert result["max_weight_diff"] <= 1e-12 and result["max_loss_diff"] <= 1e-12


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
def test_numpy_and_cuda_training_agree(optimizer):
    """The whole train_step on CuPy (fused loss rows with correct-count, flat-buffer update) against NumPy."""
    require_usable("cuda")
    # float32 on different BLAS libraries: per-step losses within 1e-5, weights within 1e-5 after 20 steps
    result = parity.compare("cpu", "cuda", "float32", optimizer=optimizer)
    assert result["max_loss_diff"] <= 1e-5 and result["max_weight_diff"] <= 1e-5, result


def test_wrong_width_nan_and_dtype_give_clear_errors(backend):
    model = mlp([4, 3, 2], backend=backend)
    with pytest.raises(ShapeError, match=r"expects \(N, 4\)"):
        model.forward(backend.from_host(np.ones((2, 5))))
    with pytest.raises(ShapeError, match="NaN"):
        model.predict_proba(np.array([[1.0, np.nan, 0.0, 0.0]]))
    with pytest.raises(DTypeMismatchError, match="mixed dtypes"):
        model.forward(backend.from_host(np.ones((2, 4)), dtype="float64"))
    with pytest.raises(ShapeError, match=r"label 7 is outside \[0, 2\)"):
        SoftmaxCrossEntropy()(
            backend, model.forward(backend.from_host(np.ones((2, 4)))), backend.from_host(np.array([0, 7]))
        )
    if backend.device != "cpu":
        with pytest.raises(DeviceMismatchError, match="from_host"):
            model.forward(np.ones((2, 4), dtype=np.float32))


def test_model_moves_between_devices_and_keeps_weights():
    model = mlp([5, 4, 3], backend="cpu", dtype="float64", seed=9)
    before = model.get_weights()
    model.to("strict")
    assert model.backend.device == "strict"
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).standard_normal((3, 5))
    strict_probs = model.predict_proba(x)
    model.to("cpu")
    np.testing.assert_allclose(model.predict_proba(x), strict_probs, atol=1e-12)
    assert np.allclose(strict_probs.sum(axis=1), 1.0)


def test_description_round_trip_rebuilds_the_same_architecture():
    model = mlp([8, 6, 4], activation="gelu", backend="cpu")
    rebuilt = Sequential.from_description(model.describe(), "cpu")
    assert rebuilt.describe() == model.describe() and rebuilt.shapes() == model.shapes()


def test_same_seed_same_initial_weights_different_seed_different():
    a, b, c = (mlp([10, 7, 3], seed=s, backend="cpu").get_weights()[0] for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() == pytest.approx(math.sqrt(2 / 10), rel=0.35)
