"""Under `sklearn.config_context(array_api_dispatch=True)`, arrays of another namespace (CuPy, PyTorch,
array-api-strict) in, arrays of that namespace and device out, as scikit-learn's Array API estimators do.

The estimators compute on their own `device` through gpunn's backend and keep their fitted attributes as
NumPy arrays (what pickles carry), so the inputs cross to the host at the boundary (scikit-learn's
`move_to`) and the predictions go back to the input's namespace and device. String labels have no
Array API dtype: those predictions stay NumPy. Without dispatch nothing here runs.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import sparse
from sklearn import get_config


def namespace_of(array):
    """(namespace, device) of `array` when dispatch is on and it is not NumPy (or sparse); else None."""
    if not get_config()["array_api_dispatch"] or array is None or isinstance(array, np.ndarray):
        return None
    if sparse.issparse(array) or not hasattr(array, "__array_namespace__"):
        return None
    from sklearn.utils._array_api import _is_numpy_namespace, device, get_namespace

    xp, _ = get_namespace(array)
    return None if _is_numpy_namespace(xp) else (xp, device(array))


def _to_numpy(array):
    from sklearn.utils._array_api import move_to

    return move_to(array, xp=np, device="cpu") if namespace_of(array) is not None else array


def _to_namespace(result, space):
    if space is None or not isinstance(result, np.ndarray) or result.dtype.kind not in "fiub":
        return result
    from sklearn.utils._array_api import move_to

    return move_to(result, xp=space[0], device=space[1])


def numpy_inside(method):
    """A fit (or partial_fit) that takes arrays of any namespace: every array argument crosses to NumPy."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return method(self, *map(_to_numpy, args), **{k: _to_numpy(v) for k, v in kwargs.items()})

    return wrapper


def in_input_namespace(method):
    """A predict-like method of X whose result returns in X's namespace and on X's device."""

    @functools.wraps(method)
    def wrapper(self, X, *args, **kwargs):
        space = namespace_of(X)
        return _to_namespace(method(self, _to_numpy(X), *args, **kwargs), space)

    return wrapper
