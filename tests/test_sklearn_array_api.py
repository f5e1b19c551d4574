"""Under scikit-learn's array_api_dispatch, arrays of another namespace (array-api-strict on a non-default
device here, CuPy or PyTorch in use) fit the estimators, and predictions return in that namespace and on
that device, equal to the NumPy path's. scikit-learn needs SCIPY_ARRAY_API=1 before SciPy is imported,
so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("array_api_strict")

SCRIPT = """
import json, warnings
import numpy as np, sklearn
import array_api_strict as xp
from sklearn.datasets import load_digits
from gpunn.sklearn import MLPClassifier, MLPRegressor

warnings.simplefilter("ignore")
X, y = load_digits(return_X_y=True)
X, y = X[:300] / 16, y[:300]
where = xp.Device("device1")
Xs = xp.asarray(X, device=where)
report = {}
for name, make, target in [
    ("classifier", lambda: MLPClassifier((8,), max_iter=3, random_state=0, device=__DEVICE__), y),
    ("regressor", lambda: MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0, device=__DEVICE__), y / 9.0),
]:
    with sklearn.config_context(array_api_dispatch=True):
        model = make().fit(Xs, xp.asarray(target, device=where))
        methods = ["predict"] + (["predict_proba", "predict_log_proba"] if name == "classifier" else [])
        results = {m: getattr(model, m)(Xs[:20, ...]) for m in methods}
        plain = make().fit(X, target)
    for method, result in results.items():
        expected = getattr(plain, method)(X[:20])
        report[f"{name}.{method}"] = [
            type(result).__module__.split(".")[0],
            str(result.device),
            bool(np.allclose(np.asarray(xp.asarray(result, device=xp.Device("CPU_DEVICE"))), expected)),
        ]
    with sklearn.config_context(array_api_dispatch=True):
        report[f"{name}.numpy_in"] = type(model.predict(X[:3])).__module__.split(".")[0]
print(json.dumps(report))
"""


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_array_api_inputs_fit_and_predictions_keep_their_namespace_and_device(device):
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    code = SCRIPT.replace("__DEVICE__", repr(device))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for key, value in report.items():
        if key.endswith("numpy_in"):
            assert value == "numpy", key  # NumPy in, NumPy out, dispatch or not
        else:
            assert value == ["array_api_strict", "array_api_strict.Device('device1')", True], key
