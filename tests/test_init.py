"""Initialisers: each one's standard deviation and bounds from its formula, on a sample large enough that a
changed constant or a fan_in/fan_out swap shows (fan_in=300, fan_out=500: the std error of a std is ~0.1%)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpunn.nn import mlp
from gpunn.nn.init import INITIALIZERS, get_initializer

FAN_IN, FAN_OUT = 300, 500


def draw(name: str, seed: int = 0) -> np.ndarray:
    return get_initializer(name)(np.random.default_rng(seed), FAN_IN, FAN_OUT)


@pytest.mark.parametrize(
    "name, std",
    [
        ("he", math.sqrt(2 / FAN_IN)),
        ("xavier", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ],
)
def test_normal_initialisers_have_zero_mean_and_the_formula_std(name, std):
    weights = draw(name)
    assert weights.shape == (FAN_IN, FAN_OUT)
    assert weights.std() == pytest.approx(std, rel=0.01)
    assert abs(weights.mean()) < 0.01 * std


def test_unknown_initialiser_lists_the_choices():
    with pytest.raises(
        ValueError,
        match="unknown initializer 'lecun': choose from he, xavier, glorot_uniform, glorot_uniform_logistic$",
    ):
        get_initializer("lecun")
    # the names the CLI offers (issue 17: one registry); glorot_uniform is scikit-learn's MLP init (issue 26)
    assert set(INITIALIZERS) == {"he", "xavier", "glorot_uniform", "glorot_uniform_logistic"}


@pytest.mark.parametrize("name, factor", [("glorot_uniform", 6.0), ("glorot_uniform_logistic", 2.0)])
def test_glorot_uniform_fills_the_formula_bound(name, factor):
    bound = math.sqrt(factor / (FAN_IN + FAN_OUT))
    weights = draw(name)
    assert weights.shape == (FAN_IN, FAN_OUT)
    assert np.abs(weights).max() <= bound and np.abs(weights).max() > 0.999 * bound
    assert weights.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)  # uniform on [-b, b]


@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_glorot_models_draw_scikit_learns_weights_and_biases_in_its_order(activation):
    """One RandomState, each layer's weight then its bias: the very numbers scikit-learn starts from."""
    from sklearn.neural_network import MLPClassifier as Reference

    from gpunn.backend import get_backend
    from gpunn.sklearn.model import build_model

    units = [7, 5, 4, 3]
    ours = build_model(units, activation, get_backend("cpu", "float64"), rng=np.random.RandomState(3))
    reference = Reference(hidden_layer_sizes=units[1:-1], activation=activation)
    reference._random_state = np.random.RandomState(3)
    reference._label_binarizer = type("Binarized", (), {"y_type_": "multiclass"})()
    reference._initialize(np.zeros((1, 3)), units, np.float64)
    expected = [array for pair in zip(reference.coefs_, reference.intercepts_, strict=True) for array in pair]
    for got, want in zip(ours.get_weights(), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_mlp_uses_the_named_initialiser_for_every_dense_layer():
    weights = mlp([FAN_IN, FAN_OUT, 50], init="xavier", backend="cpu", dtype="float64").get_weights()
    for weight, (fan_in, fan_out) in zip(weights[::2], [(FAN_IN, FAN_OUT), (FAN_OUT, 50)], strict=True):
        assert weight.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.05)
    assert not weights[1].any() and not weights[3].any()  # biases start at zero
