"""A pass's backward context lives in the backprop that begin_update returns, never on the layers: passes in
flight do not mix their inputs, and inference leaves no batch behind on any layer."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.nn import SGD, mlp
from gpunn.nn.layers import ACTIVATIONS
from gpunn.nn.step import train_step

SIZES = [6, 9, 7, 4]


def gradients(model) -> list[np.ndarray]:
    """Host copies of every Param's gradient (on NumPy they are views of one buffer that the next pass reuses)."""
    return [np.array(model.backend.to_host(p.grad), copy=True) for p in model.parameters()]


def batch(backend, seed: int, rows: int = 5):
    rng = np.random.default_rng(seed)
    x = backend.from_host(rng.standard_normal((rows, SIZES[0])))
    return x, backend.from_host(rng.standard_normal((rows, SIZES[-1])))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_a_second_pass_in_flight_leaves_the_first_backprop_its_own_input(backend64, activation):
    """begin_update twice, then the first pass's backprop: the gradients of a lone pass on the first input
    (with Dropout keyed by each pass's own step), bit for bit."""
    b = backend64
    (x1, g1), (x2, _) = batch(b, 1), batch(b, 2)
    model = mlp(SIZES, activation=activation, dropout=0.25, backend=b, seed=3)
    out1, first = model.begin_update(x1, step=1)
    out2, _ = model.begin_update(x2, step=2)
    first(g1)
    interleaved = gradients(model)

    lone = mlp(SIZES, activation=activation, dropout=0.25, backend=b, seed=3)
    alone_out, alone = lone.begin_update(x1, step=1)
    alone(g1)
    np.testing.assert_array_equal(b.to_host(out1), b.to_host(alone_out))
    assert not np.array_equal(b.to_host(out1), b.to_host(out2))  # the second pass did see other data
    for got, want in zip(interleaved, gradients(lone), strict=True):
        np.testing.assert_array_equal(got, want)
    assert any(np.abs(g).max() > 0 for g in interleaved)


def arrays_with_rows(obj, rows: int) -> list[str]:
    """Names of obj's attributes that are arrays with a dimension of `rows` (a batch left behind)."""
    return [name for name, value in vars(obj).items() if rows in tuple(getattr(value, "shape", ()))]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_no_layer_keeps_a_batch_after_inference_or_a_training_step(backend, activation):
    rows = 1031  # no layer width, so any array with this dimension is a batch kept
    model = mlp(SIZES, activation=activation, dropout=0.25, backend=backend, seed=0)
    x_host = np.random.default_rng(0).standard_normal((rows, SIZES[0]))
    assert model.predict_proba(x_host, batch_size=rows).shape == (rows, SIZES[-1])
    model.forward(backend.from_host(x_host))
    labels = backend.from_host(np.random.default_rng(1).integers(0, SIZES[-1], rows))
    train_step(model, SGD(0.1), backend.from_host(x_host), labels, step=0)
    kept = {
        f"{i} {type(layer).__name__}": arrays_with_rows(layer, rows) for i, layer in enumerate(model.layers)
    }
    assert not any(kept.values()), kept
    assert not arrays_with_rows(model, rows)
