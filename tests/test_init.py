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
        ("he_normal", math.sqrt(2 / FAN_IN)),
        ("xavier_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ],
)
def test_normal_initialisers_have_zero_mean_and_the_formula_std(name, std):
    weights = draw(name)
    assert weights.shape == (FAN_IN, FAN_OUT)
    assert weights.std() == pytest.approx(std, rel=0.01)
    assert abs(weights.mean()) < 0.01 * std


@pytest.mark.parametrize(
    "name, limit",
    [
        ("he_uniform", math.sqrt(6 / FAN_IN)),
        ("xavier_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ],
)
def test_uniform_initialisers_fill_minus_limit_to_limit(name, limit):
    weights = draw(name)
    assert weights.shape == (FAN_IN, FAN_OUT)
    assert weights.min() >= -limit and weights.max() <= limit
    assert weights.min() < -0.999 * limit and weights.max() > 0.999 * limit
    assert weights.std() == pytest.approx(limit / math.sqrt(3), rel=0.01)


def test_zeros_are_zeros_of_the_right_shape():
    weights = draw("zeros")
    assert weights.shape == (FAN_IN, FAN_OUT) and not weights.any()


@pytest.mark.parametrize(
    "alias, name",
    [
        ("he", "he_normal"),
        ("xavier", "xavier_normal"),
        ("glorot_normal", "xavier_normal"),
        ("glorot_uniform", "xavier_uniform"),
    ],
)
def test_aliases_draw_what_their_full_name_draws(alias, name):
    np.testing.assert_array_equal(draw(alias, seed=5), draw(name, seed=5))


def test_unknown_initialiser_lists_the_choices():
    with pytest.raises(ValueError, match="unknown initializer 'lecun': choose from he, he_normal"):
        get_initializer("lecun")
    assert "xavier_uniform" in INITIALIZERS


def test_mlp_uses_the_named_initialiser_for_every_dense_layer():
    weights = mlp([FAN_IN, FAN_OUT, 50], init="xavier_uniform", backend="cpu", dtype="float64").get_weights()
    for weight, (fan_in, fan_out) in zip(weights[::2], [(FAN_IN, FAN_OUT), (FAN_OUT, 50)], strict=True):
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(weight).max() <= limit and np.abs(weight).max() > 0.99 * limit
    assert not weights[1].any() and not weights[3].any()  # biases start at zero
