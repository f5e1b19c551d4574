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
    with pytest.raises(ValueError, match="unknown initializer 'lecun': choose from he, xavier$"):
        get_initializer("lecun")
    assert set(INITIALIZERS) == {"he", "xavier"}  # the names the CLI offers (issue 17: one registry)


def test_mlp_uses_the_named_initialiser_for_every_dense_layer():
    weights = mlp([FAN_IN, FAN_OUT, 50], init="xavier", backend="cpu", dtype="float64").get_weights()
    for weight, (fan_in, fan_out) in zip(weights[::2], [(FAN_IN, FAN_OUT), (FAN_OUT, 50)], strict=True):
        assert weight.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.05)
    assert not weights[1].any() and not weights[3].any()  # biases start at zero
