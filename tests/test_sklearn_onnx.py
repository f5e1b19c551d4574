"""skl2onnx converts gpunn's estimators, alone and in pipelines, to graphs that onnxruntime runs as they
predict (within 1e-5), with named nodes, a free batch axis and skl2onnx's producer version. (skl2onnx's
variable types take only integer or unknown dimensions, so it cannot give the batch axis a name; `gpunn
export` names it N.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import gpunn.sklearn  # noqa: F401  registers the converters
from gpunn.sklearn import MLPClassifier, MLPRegressor

skl2onnx = pytest.importorskip("skl2onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def outputs_of(proto, X):
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


def checked_graph(proto) -> None:
    assert proto.producer_name == "skl2onnx" and proto.producer_version == skl2onnx.__version__
    assert all(node.name for node in proto.graph.node)
    for value in (*proto.graph.input, *proto.graph.output):  # converted from one row, any batch runs
        assert not value.type.tensor_type.shape.dim[0].dim_value


X, Y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
CLASSIFIER_TARGETS = {
    "multiclass": Y,
    "strings": NAMES[Y],
    "binary": NAMES[Y % 2],
    "multilabel": np.column_stack([Y > 4, Y % 2]).astype(int),
}


def fit(estimator, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


@pytest.mark.parametrize("in_pipeline", [False, True], ids=["alone", "pipeline"])
@pytest.mark.parametrize("target", list(CLASSIFIER_TARGETS))
def test_a_classifier_converts_and_runs_as_it_predicts(target, in_pipeline):
    model = MLPClassifier((16,), activation="tanh", max_iter=15, random_state=0)
    estimator = make_pipeline(StandardScaler(), model) if in_pipeline else model
    fit(estimator, CLASSIFIER_TARGETS[target])
    proto = skl2onnx.to_onnx(estimator, X[:1], options={id(model): {"zipmap": False}})
    checked_graph(proto)
    label, probabilities = outputs_of(proto, X[:200])
    np.testing.assert_allclose(probabilities, estimator.predict_proba(X[:200]), atol=1e-5)
    np.testing.assert_array_equal(label, estimator.predict(X[:200]))


@pytest.mark.parametrize("in_pipeline", [False, True], ids=["alone", "pipeline"])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_a_regressor_converts_and_runs_as_it_predicts(loss, in_pipeline):
    model = MLPRegressor(loss=loss, hidden_layer_sizes=(16,), max_iter=15, random_state=0)
    estimator = make_pipeline(StandardScaler(), model) if in_pipeline else model
    fit(estimator, np.column_stack([Y / 9.0, (Y % 3) / 2.0]))
    proto = skl2onnx.to_onnx(estimator, X[:1])
    checked_graph(proto)
    (values,) = outputs_of(proto, X[:200])
    np.testing.assert_allclose(values, estimator.predict(X[:200]), atol=1e-5)
