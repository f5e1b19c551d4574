"""Library hygiene of the estimators: log probabilities in log space, nothing process-wide, float32 on a GPU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from gpunn.sklearn import MLPClassifier, MLPRegressor


def fitted(make, X, y, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make(hidden_layer_sizes=(8,), max_iter=3, random_state=0, **settings).fit(X, y)


@pytest.mark.parametrize("labels", ["binary", "multiclass", "multilabel"])
def test_predict_log_proba_is_finite_where_the_probabilities_saturate(labels):
    X, y = load_digits(return_X_y=True)
    X = X / 16
    y = {"binary": y > 4, "multiclass": y, "multilabel": np.column_stack([y > 4, y % 2])}[labels]
    model = fitted(MLPClassifier, X, y)
    mild = model.predict_log_proba(X[:30])
    np.testing.assert_allclose(mild, np.log(model.predict_proba(X[:30])), rtol=1e-9, atol=1e-12)
    model.coefs_[-1] = model.coefs_[-1] * 1e4  # outputs of size ~1e4: probabilities round to 0 and 1
    model.intercepts_[-1] = model.intercepts_[-1] * 1e4
    with np.errstate(divide="ignore"):
        rounded = np.log(model.predict_proba(X[:30]))
    assert np.isinf(rounded).any()  # what log(predict_proba) gives, and gpunn gave before
    saturated = model.predict_log_proba(X[:30])
    assert np.isfinite(saturated).all() and saturated.max() <= 0.0
    finite = np.isfinite(rounded)
    np.testing.assert_array_equal(saturated[finite], rounded[finite])  # the log of each probability kept


def test_fitting_leaves_the_process_allocator_alone(monkeypatch):
    """Neither a NumPy backend nor a fit calls glibc's mallopt: only the gpunn command tunes it."""
    from gpunn.backend import numpy_backend

    def refuse(*args, **kwargs):
        raise AssertionError("the library loaded libc to tune the process's allocator")

    monkeypatch.setattr(numpy_backend, "_allocator_tuned", False)
    monkeypatch.setattr(numpy_backend.ctypes, "CDLL", refuse)
    numpy_backend.NumpyBackend("float64")
    X, y = load_digits(return_X_y=True)
    fitted(MLPClassifier, X[:100] / 16, y[:100])
    fitted(MLPRegressor, X[:100] / 16, y[:100] / 9.0)


def test_the_train_command_tunes_the_allocator(monkeypatch, tmp_path):
    from gpunn.backend import numpy_backend
    from gpunn.cli.main import main

    calls = []
    monkeypatch.setattr(numpy_backend, "tune_host_allocator", lambda: calls.append(1) or True)
    args = ["train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    assert calls == [1]
    assert main(["info"]) == 0 and calls == [1]  # a command that trains nothing leaves it alone


@pytest.mark.gpu
def test_on_a_gpu_dtype_none_trains_float32_unless_float64_is_asked_for():
    from conftest import require_usable

    require_usable("cuda")
    X, y = load_digits(return_X_y=True)
    X = X[:200] / 16  # float64
    assert fitted(MLPClassifier, X, y[:200], device="cuda").coefs_[0].dtype == np.float32
    assert fitted(MLPClassifier, X, y[:200], device="cuda", dtype="float64").coefs_[0].dtype == np.float64
    assert fitted(MLPClassifier, X, y[:200], device="cpu").coefs_[0].dtype == np.float64  # the host: X's
