"""scikit-learn's own test_mlp.py (from the installed scikit-learn) with gpunn's estimators swapped in.

The file is loaded as a fresh module per device, its MLPClassifier/MLPRegressor globals replaced by gpunn's
(with that default device), and its test functions collected here unchanged. Every upstream test runs on
the host; on the strict device all but STRICT_TOO_SLOW.
"""

from __future__ import annotations

import importlib.util
import types

import pytest
import sklearn.neural_network.tests.test_mlp as _installed

from gpunn.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.slow  # scikit-learn's own test_mlp.py, on the host and on strict

UPSTREAM_PATH = _installed.__file__
STRICT_TOO_SLOW = {
    # 3000 epochs at array-api-strict's per-operation overhead take ~5 minutes; the same stopping code runs
    # on strict in test_n_iter_no_change, and this test runs on the host.
    "test_n_iter_no_change_inf",
}


def with_default_device(cls, device: str):
    """A subclass of cls whose `device` defaults to `device` (same signature, so get_params works)."""
    init = cls.__init__
    new_init = types.FunctionType(
        init.__code__, init.__globals__, init.__name__, init.__defaults__, init.__closure__
    )
    new_init.__kwdefaults__ = {**init.__kwdefaults__, "device": device}
    name = f"{cls.__name__}On{device.capitalize()}"
    subclass = type(name, (cls,), {"__init__": new_init, "__module__": __name__, "__qualname__": name})
    globals()[name] = subclass  # where pickle (joblib.dump in the upstream tests) looks it up
    return subclass


def upstream_tests(device: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"sklearn_test_mlp_on_{device}", UPSTREAM_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    default = device == "cpu"
    module.MLPClassifier = MLPClassifier if default else with_default_device(MLPClassifier, device)
    module.MLPRegressor = MLPRegressor if default else with_default_device(MLPRegressor, device)
    return module


@pytest.fixture
def global_random_seed():
    """scikit-learn's conftest fixture, at its default seed (42)."""
    return 42


for _device in ("cpu", "strict"):
    _module = upstream_tests(_device)
    for _name, _test in vars(_module).items():
        if (
            _name.startswith("test_")
            and callable(_test)
            and not (_device == "strict" and _name in STRICT_TOO_SLOW)
        ):
            globals()[f"{_name}_on_{_device}"] = _test
