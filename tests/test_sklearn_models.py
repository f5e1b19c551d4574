"""A fitted estimator is a gpunn model: model_ is its Sequential, save() writes a gpunn checkpoint that the
CLI takes (a classifier's) and load() restores, exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from gpunn.checkpoint import load_checkpoint, save_checkpoint
from gpunn.data import load_dataset
from gpunn.errors import CheckpointError
from gpunn.nn import Sequential
from gpunn.sklearn import MLPClassifier, MLPRegressor
from gpunn.training.run import train


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "gpunn", *args], capture_output=True, text=True, env=os.environ
    )


def quietly(fit, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit(*args)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def digits_classifier():
    """Fitted on gpunn's digits training set (pixels / 255), so the CLI's digits test set fits it."""
    train_set = load_dataset("digits", "train")
    model = MLPClassifier((24,), max_iter=40, random_state=0)
    return quietly(model.fit, train_set.features / 255.0, train_set.labels)


def test_model_is_the_sequential_whose_output_the_link_turns_into_predictions(digits):
    X, y = digits
    model = quietly(MLPClassifier((16, 8), activation="tanh", max_iter=5, random_state=0).fit, X, y)
    sequential = model.model_
    assert isinstance(sequential, Sequential)
    assert [type(layer).__name__ for layer in sequential.layers] == [
        "Dense",
        "Tanh",
        "Dense",
        "Tanh",
        "Dense",
    ]
    pairs = [a for p in zip(model.coefs_, model.intercepts_, strict=True) for a in p]
    for got, want in zip(sequential.get_weights(), pairs, strict=True):
        np.testing.assert_array_equal(got, want)
    backend = sequential.backend
    logits = backend.to_host(sequential.forward(backend.from_host(X[:7])))
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(
        model.predict_proba(X[:7]), expected / expected.sum(axis=1, keepdims=True), rtol=1e-12
    )
    with pytest.raises(AttributeError):
        _ = MLPClassifier().model_  # unfitted: scikit-learn's NotFittedError (an AttributeError)


@pytest.mark.parametrize(
    "case",
    ["multiclass-strings", "binary", "multilabel", "regressor", "poisson", "float32"],
)
def test_save_then_load_gives_the_same_estimator(tmp_path, digits, case):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    make, target = {
        "multiclass-strings": (MLPClassifier, names[y]),
        "binary": (MLPClassifier, y % 2),
        "multilabel": (MLPClassifier, np.column_stack([y % 2, y > 4, y == 3]).astype(int)),
        "regressor": (MLPRegressor, np.column_stack([y / 9.0, (y % 3) / 2.0])),
        "poisson": (lambda **kw: MLPRegressor(loss="poisson", **kw), y.astype(float)),
        "float32": (lambda **kw: MLPClassifier(dtype="float32", **kw), y),
    }[case]
    fitted = quietly(make(hidden_layer_sizes=(12,), max_iter=4, random_state=0).fit, X, target)
    path = fitted.save(tmp_path / "model.npz")
    loaded = type(fitted).load(path)
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    for a, b in zip(loaded.coefs_ + loaded.intercepts_, fitted.coefs_ + fitted.intercepts_, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(X[:50]), fitted.predict(X[:50]))
    assert loaded.loss_curve_ == fitted.loss_curve_ and loaded.n_iter_ == fitted.n_iter_
    header = load_checkpoint(path).header
    assert header["input_width"] == 64
    if case == "multiclass-strings":
        assert header["classes"] == sorted(names) == loaded.classes_.tolist()
        np.testing.assert_array_equal(loaded.predict_proba(X[:50]), fitted.predict_proba(X[:50]))
    assert header["outputs"] == {"regressor": "identity", "poisson": "exp", "multilabel": "logistic"}.get(
        case, "softmax"
    )


def test_a_binary_classifier_saves_as_a_two_class_softmax_model(tmp_path, digits):
    """Its logistic output z becomes the logits (0, z): gpunn's own model reads its predict_proba."""
    X, y = digits
    fitted = quietly(MLPClassifier((10,), max_iter=3, random_state=0).fit, X, np.where(y > 4, "big", "small"))
    path = fitted.save(tmp_path / "binary.npz")
    sequential = Sequential.load(path, dtype="float64")
    assert sequential.out_features == 2 and load_checkpoint(path).header["classes"] == ["big", "small"]
    np.testing.assert_allclose(
        sequential.predict_proba(X[:40]), fitted.predict_proba(X[:40]), rtol=1e-12, atol=1e-15
    )
    # a two-logit model trained further (here: the same shift on both logits) loads as the difference
    weights = sequential.get_weights()
    weights[-2], weights[-1] = weights[-2] + 0.5, weights[-1] + 3.0
    sequential.set_weights(weights)
    shifted = save_checkpoint(tmp_path / "shifted.npz", sequential, load_checkpoint(path).header)
    np.testing.assert_allclose(
        MLPClassifier.load(shifted).predict_proba(X[:40]), fitted.predict_proba(X[:40]), rtol=1e-9
    )


def test_the_cli_evaluates_predicts_and_exports_a_saved_classifier(tmp_path, digits_classifier):
    path = digits_classifier.save(tmp_path / "mlp.npz")
    test_set = load_dataset("digits", "test")
    accuracy = digits_classifier.score(test_set.features / 255.0, test_set.labels)
    evaluated = cli("evaluate", str(path), "--dataset", "digits")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"accuracy {accuracy:.2%} on {len(test_set.labels)} samples" in evaluated.stdout
    np.save(tmp_path / "rows.npy", test_set.features[:3])
    predicted = cli("predict", str(path), str(tmp_path / "rows.npy"), "--top", "1")
    assert predicted.returncode == 0, predicted.stderr
    labels = digits_classifier.predict(test_set.features[:3] / 255.0)
    assert [line.split(": ")[1].split(" ")[0] for line in predicted.stdout.splitlines()] == [
        str(v) for v in labels
    ]
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "mlp.onnx"
    exported = cli(
        "export", str(path), "--onnx", str(onnx_path), "--input-dtype", "float32", "--input-shape", "flat"
    )
    assert exported.returncode == 0, exported.stderr
    import onnx

    import gpunn

    proto = onnx.load(str(onnx_path))
    assert proto.producer_version == gpunn.__version__ and all(node.name for node in proto.graph.node)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"  # the batch axis is named
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rows = (test_set.features[:20] / 255.0).astype(np.float32)
    outputs = session.run(None, {session.get_inputs()[0].name: rows})
    probabilities = next(o for o in outputs if o.ndim == 2)
    np.testing.assert_allclose(
        probabilities, digits_classifier.predict_proba(rows.astype(np.float64)), atol=1e-5
    )


def test_the_cli_refuses_a_regressor_by_name_and_load_refuses_other_checkpoints(tmp_path, digits):
    X, y = digits
    regressor = quietly(MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit, X, y / 9.0)
    path = regressor.save(tmp_path / "regressor.npz")
    np.save(tmp_path / "rows.npy", X[:2])
    refused = cli("predict", str(path), str(tmp_path / "rows.npy"))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert (
        "outputs are identity, not class probabilities: load it with gpunn.sklearn.MLPRegressor.load"
        in refused.stderr
    )
    with pytest.raises(CheckpointError, match="holds a scikit-learn regressor, not an MLPClassifier"):
        MLPClassifier.load(path)
    run = tmp_path / "run"
    train(out=run, dataset="digits", epochs=1, verbose=False)
    with pytest.raises(CheckpointError, match="not a scikit-learn estimator's checkpoint"):
        MLPClassifier.load(run / "checkpoint.npz")
