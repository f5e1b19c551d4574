"""One checkpoint -> model loader, driven by the layers' own descriptions of their parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpunn.checkpoint import architecture_summary, class_names, load_checkpoint, load_model, save_checkpoint
from gpunn.errors import CheckpointError
from gpunn.nn.layers import LAYER_TYPES, Dense, Layer, Param, Tanh, layer_from_description, summary_of
from gpunn.nn.model import Sequential, mlp

OLD = Path(__file__).parent / "data" / "checkpoint-v1-6-4-3.npz"  # written by gpunn before layers described themselves


def test_a_checkpoint_written_before_the_layer_descriptions_still_loads():
    stored = np.load(OLD)
    w1, b1, w2, b2 = (stored[f"param.{i}"] for i in range(4))
    x = np.arange(12, dtype=np.float64).reshape(2, 6) / 12
    logits = np.tanh(x @ w1 + b1) @ w2 + b2
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    model = load_model(OLD, "cpu")

    assert model.describe() == [
        {"type": "Dense", "in": 6, "out": 4, "init": "he"},
        {"type": "Tanh"},
        {"type": "Dense", "in": 4, "out": 3, "init": "he"},
    ]
    np.testing.assert_allclose(model.predict_proba(x), expected, rtol=1e-12)
    # trained "on fashion-mnist" but with 3 outputs: its 10 names do not fit, so the outputs are numbered
    assert class_names(load_checkpoint(OLD), model.out_features) == ("0", "1", "2")


def test_the_library_and_the_cli_load_the_same_model(tmp_path):
    model = mlp([5, 7, 4], activation="gelu", seed=1, backend="cpu", dtype="float64")
    save_checkpoint(tmp_path / "m.npz", model, {"classes": ["a", "b", "c", "d"]})
    from gpunn.cli.predict_inputs import load_predictor

    via_cli, names = load_predictor(tmp_path / "m.npz", "cpu")
    via_library = Sequential.load(tmp_path / "m.npz", "cpu")
    for loaded in (via_cli, via_library):
        for got, want in zip(loaded.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    assert names == ("a", "b", "c", "d")


def test_each_layer_declares_its_parameters_before_any_weight_exists():
    dense = layer_from_description({"type": "Dense", "in": 3, "out": 2})
    assert dense.weight is None  # nothing drawn yet
    assert dense.parameter_shapes() == (("weight", (3, 2)), ("bias", (2,)))
    assert Tanh().parameter_shapes() == ()
    with pytest.raises(ValueError, match="do not chain"):
        dense.output_features(4)


def test_the_summary_is_built_from_the_layers():
    assert summary_of([Dense(3, 5), Tanh(), Dense(5, 2)]) == "3-5-2 tanh"
    # from a checkpoint header's description: the same words, each layer rebuilt and asked
    assert architecture_summary(mlp([784, 128, 64, 10], backend="cpu").describe()) == "784-128-64-10 relu"


def test_a_declared_shape_that_the_layers_do_not_allow_is_refused(tmp_path):
    model = mlp([4, 3, 2], backend="cpu")
    header = {"architecture": [{"type": "Dense", "in": 4, "out": 3}, {"type": "Dense", "in": 5, "out": 2}]}
    save_checkpoint(tmp_path / "m.npz", model, header)
    with pytest.raises(CheckpointError, match=r"layer sizes do not chain \(3 then 5\)"):
        load_checkpoint(tmp_path / "m.npz")


class Scale(Layer):
    """A new layer with weights, y = x * w, defined here alone: nothing else in gpunn learns about it."""

    def __init__(self, features: int):
        self.features = features
        self.scale = None

    @property
    def params(self):
        return (self.scale,)

    def bind(self, backend, rng=None):
        if self.scale is None:
            self.scale = Param("scale", backend.from_host(np.linspace(0.5, 2.0, self.features)))
        self.backend = backend

    def forward(self, x):
        return x * self.scale.value

    def describe(self):
        return {"type": "Scale", "features": self.features}

    @classmethod
    def from_description(cls, description):
        return cls(description["features"])

    def parameter_shapes(self):
        return (("scale", (self.features,)),)


def test_a_new_layer_with_weights_saves_and_loads_through_its_own_description(tmp_path, monkeypatch):
    monkeypatch.setitem(LAYER_TYPES, "Scale", Scale)
    model = Sequential([Dense(3, 4), Scale(4), Dense(4, 2)], "cpu", dtype="float64")
    save_checkpoint(tmp_path / "m.npz", model)
    loaded = load_model(tmp_path / "m.npz", "cpu")
    np.testing.assert_array_equal(loaded.layers[1].scale.value, np.linspace(0.5, 2.0, 4))
    x = np.arange(6.0).reshape(2, 3) / 6
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    header = {"architecture": [*model.describe()[:1], {"type": "Scale", "features": 5}, model.describe()[2]]}
    save_checkpoint(tmp_path / "bad.npz", model, header)  # declares scale (5,): the file holds (4,)
    with pytest.raises(CheckpointError, match="declares float64 \\(4,\\), which the architecture does not allow"):
        load_checkpoint(tmp_path / "bad.npz")
